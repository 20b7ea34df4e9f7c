"""The checks shared by the edges where values enter: the settings, the HTTP routes, Label
Studio's answers, the state's own rows, and the parameters of the engine's dataclasses that
people build themselves (``QueryPolicy``, ``Recipe``, ``SlicParams``, ``Budget``).

Inside, functions trust the typed values they are given (scikit-learn's way: declared once,
validated once at the boundary). A bool is never a number here, though Python calls it an int.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_ID", "check_fraction", "check_id", "check_int", "is_int", "is_number"]

#: Largest id (SQLite's and Label Studio's 64-bit signed integers).
MAX_ID = 2**63 - 1


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, never a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A Python or NumPy real number, never a bool."""
    return is_int(value) or isinstance(value, (float, np.floating))


def check_int(name: str, value: Any, minimum: int, alternative: str = "") -> None:
    """``value`` must be an int ``>= minimum`` (``alternative`` names what else is allowed)."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{alternative}, got {value!r}")


def check_fraction(name: str, value: Any) -> None:
    """``value`` must be a number in ``(0, 1]``."""
    if not is_number(value) or not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def check_id(value: Any, what: str = "project") -> int:
    """``value`` as an id in ``1 .. 2**63 - 1`` (a Python or NumPy int, never a bool)."""
    if not is_int(value):
        raise TypeError(f"{what} id must be an int, got {value!r}")
    value = int(value)
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"{what} id must be in 1..{MAX_ID}, got {value}")
    return value
