"""Which torch device a run uses (:func:`pick_device`)."""

from __future__ import annotations

import torch

__all__ = ["pick_device"]


def pick_device(preference: str = "auto") -> torch.device:
    """Choose the torch device.

    Parameters
    ----------
    preference : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    torch.device
    """
    if not isinstance(preference, str):
        raise TypeError(f"device preference must be a str, got {type(preference).__name__}")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or (preference.startswith("cuda:") and preference[5:].isdigit()):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preference!r} was requested but CUDA is not available "
                               f"(torch {torch.__version__}); use 'cpu' or 'auto'")
        device = torch.device(preference)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {preference!r} was requested but only "
                               f"{torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise ValueError(f"unknown device {preference!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
