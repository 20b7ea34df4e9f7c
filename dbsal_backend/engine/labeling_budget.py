"""The labeling budget: how much labeling a project may ask of people, and what is left.

What people have labeled (:class:`Effort`) is measured, never booked: the backend counts it from
the annotations it trains on, the simulator from its annotator's answers. A :class:`Budget` sets
a limit in one unit; :meth:`Budget.left` says what remains, and the active-learning step offers
no more regions than that (:func:`~dbsal_backend.engine.active.fit_budget`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .checks import is_int

__all__ = ["BUDGET_UNITS", "Budget", "Effort"]

#: Units a budget can be set in.
BUDGET_UNITS = ("images", "regions", "pixels")


@dataclass(frozen=True)
class Effort:
    """Labeling done: images touched, regions (brush results) given, pixels labeled."""

    images: int = 0
    regions: int = 0
    pixels: int = 0

    def __add__(self, other: Effort) -> Effort:
        return Effort(self.images + other.images, self.regions + other.regions,
                      self.pixels + other.pixels)

    def in_unit(self, unit: str) -> int:
        """The amount in ``unit`` (one of :data:`BUDGET_UNITS`)."""
        return getattr(self, unit)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """A labeling limit.

    Parameters
    ----------
    limit : int or None
        Total allowed in ``unit``; None: unlimited.
    unit : {"images", "regions", "pixels"}
    """

    limit: int | None = None
    unit: str = "regions"

    def __post_init__(self) -> None:
        if self.unit not in BUDGET_UNITS:
            raise ValueError(f"budget unit must be one of {BUDGET_UNITS}, got {self.unit!r}")
        if self.limit is not None and (not is_int(self.limit) or self.limit < 1):
            raise ValueError(f"budget limit must be a positive int or None, got {self.limit!r}")

    def left(self, spent: Effort) -> int | None:
        """What remains in :attr:`unit` after ``spent`` (at least 0); None when unlimited."""
        return None if self.limit is None else max(self.limit - spent.in_unit(self.unit), 0)

    def exhausted(self, spent: Effort) -> bool:
        """Whether ``spent`` has reached the limit (never for an unlimited budget)."""
        return self.limit is not None and spent.in_unit(self.unit) >= self.limit

    def status(self, spent: Effort) -> dict[str, Any]:
        """A JSON-ready summary for ``/status``."""
        return {"unit": self.unit, "limit": self.limit, "spent": spent.to_dict(),
                "left": self.left(spent), "exhausted": self.exhausted(spent)}
