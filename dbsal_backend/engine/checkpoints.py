"""Checkpoints: the model weights and what they were trained for, in one self-describing file.

- :func:`save_checkpoint`: written atomically (:func:`~dbsal_backend.engine.files.atomic_write`).
- :func:`load_checkpoint`: the model rebuilt, checked against the expected classes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .devices import pick_device
from .files import atomic_write
from .networks import ARCHITECTURES, build_model

__all__ = ["CheckpointMismatch", "load_checkpoint", "save_checkpoint"]

_CHECKPOINT_FORMAT = "dbsal-checkpoint"
_CHECKPOINT_VERSION = 1


class CheckpointMismatch(ValueError):
    """A checkpoint was made for other classes than expected."""


def _check_meta(meta: object) -> None:
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    missing = [key for key in ("arch", "classes", "settings") if key not in meta]
    if missing:
        raise ValueError(f"meta is missing {missing}; it needs 'arch', 'classes' and 'settings'")
    if meta["arch"] not in ARCHITECTURES:
        raise ValueError(f"meta['arch'] must be one of {ARCHITECTURES}, got {meta['arch']!r}")
    classes = meta["classes"]
    if not isinstance(classes, (list, tuple)) or not classes \
            or not all(isinstance(name, str) for name in classes):
        raise ValueError(f"meta['classes'] must be a non-empty list of class names, "
                         f"got {classes!r}")
    if not isinstance(meta["settings"], dict):
        raise ValueError(f"meta['settings'] must be a dict, "
                         f"got {type(meta['settings']).__name__}")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """Write the model weights and ``meta`` to ``path`` atomically.

    The file is written with :func:`~dbsal_backend.engine.files.atomic_write` (flushed to the disk),
    so ``path`` is either the old or the complete new checkpoint, never a partial one. Parent
    directories are created.

    Parameters
    ----------
    path : path
        Destination file.
    model : torch.nn.Module
        The model; its ``state_dict`` is saved (moved to CPU).
    meta : dict
        JSON-compatible metadata with at least ``arch`` (one of ``networks.ARCHITECTURES``),
        ``classes`` (list of class names, one per model output) and ``settings`` (dict).
    """
    _check_meta(meta)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must hold only JSON-compatible values: {err}") from err
    n_classes = getattr(model, "n_classes", None)
    if n_classes is not None and n_classes != len(meta["classes"]):
        raise ValueError(f"the model has {n_classes} outputs but meta['classes'] names "
                         f"{len(meta['classes'])} classes")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_write(path, fsync=True) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | os.PathLike, expected_classes: Sequence[str] | None = None,
                    device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    The model is ``networks.build_model(meta["arch"], len(meta["classes"]), pretrained=False)``
    with the saved weights, on ``device``, in eval mode.

    Parameters
    ----------
    path : path
        Checkpoint file.
    expected_classes : sequence of str, optional
        Class names (in order) the checkpoint must have been trained for.
    device : torch.device or str
        Where to put the model (``"auto"`` allowed).

    Returns
    -------
    model : torch.nn.Module
    meta : dict

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a readable checkpoint, or its weights do not fit its architecture.
    CheckpointMismatch
        The classes differ from the expected ones.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} is corrupt or not a checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a dbsal checkpoint (no '{_CHECKPOINT_FORMAT}' marker)")
    if payload.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} has format version {payload.get('version')!r}; "
                         f"this code reads version {_CHECKPOINT_VERSION}")
    meta = payload.get("meta")
    _check_meta(meta)
    if expected_classes is not None and list(meta["classes"]) != list(expected_classes):
        raise CheckpointMismatch(f"checkpoint {path} was trained for classes "
                                 f"{list(meta['classes'])}, expected {list(expected_classes)}")
    model = build_model(meta["arch"], len(meta["classes"]), pretrained=False)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"checkpoint {path}: the weights do not fit a {meta['arch']!r} model "
                         f"with {len(meta['classes'])} classes: {err}") from err
    model.to(device if isinstance(device, torch.device) else pick_device(device))
    model.eval()
    return model, meta
