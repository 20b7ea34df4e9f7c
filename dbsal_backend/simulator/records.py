"""What a simulation is set up with and what each step of a run gives."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..engine import defaults
from ..engine.training import Recipe
from .annotator import Answer, ClickModel, cai_clicks


@dataclass(frozen=True)
class SimConfig:
    """Settings of a simulation (all recorded in the results)."""

    n_classes: int
    init_images: int = defaults.INITIAL_IMAGES
    images_per_step: int = defaults.STEP_IMAGES
    steps: int = 5
    arch: str = defaults.ARCH
    pretrained: bool = defaults.PRETRAINED
    heuristic: str = defaults.HEURISTIC
    mc_samples: int = defaults.MC_SAMPLES
    max_side: int = defaults.MAX_SIDE
    recipe: Recipe = field(default_factory=Recipe)
    first_epochs: int = defaults.FIRST_EPOCHS
    full_epochs: int | None = None
    clicks: ClickModel = field(default_factory=ClickModel)
    device: str = "auto"
    cache_dir: str = ".sim-cache"


@dataclass
class SimulatedStep:
    """One step of one strategy and seed. Counts are cumulative (seed set included) except
    ``prelabels_*`` and ``regions_per_image``, which describe this step's queries.
    ``cai_clicks`` is ``clicks`` under Cai et al.'s convention (:func:`.annotator.cai_clicks`;
    ``None`` in records from before it was kept: :func:`with_cai_clicks` fills it)."""

    step: int
    images: int
    regions: int
    corrections: int
    clicks: int
    pixels: int
    pixels_fraction: float
    miou: float
    regions_per_image: list[int] = field(default_factory=list)
    superpixel_fraction: list[float] = field(default_factory=list)
    prelabels_right: int = 0
    prelabels_judged: int = 0
    seconds: float = 0.0
    cai_clicks: int | None = None

    @property
    def prelabel_accuracy(self) -> float | None:
        return self.prelabels_right / self.prelabels_judged if self.prelabels_judged else None


@dataclass
class Tally:
    images: int = 0
    regions: int = 0
    corrections: int = 0
    clicks: int = 0
    pixels: int = 0

    def add(self, answer: Answer, image: bool = True) -> None:
        self.images += int(image)
        self.regions += answer.regions
        self.corrections += answer.corrections
        self.clicks += answer.clicks
        self.pixels += answer.pixels


def with_cai_clicks(step: SimulatedStep, clicks: ClickModel) -> SimulatedStep:
    """``step`` with :attr:`SimulatedStep.cai_clicks` (computed when missing)."""
    if step.cai_clicks is not None:
        return step
    return replace(step, cai_clicks=cai_clicks(step.clicks, step.regions, step.corrections,
                                               clicks))


def jsonable(value):
    """``value`` with tuples as lists (as JSON has them), for digests and results."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
