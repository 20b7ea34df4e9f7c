"""The models that answer predictions: one per project, loaded from its newest checkpoint.

A training run (in a job process) writes a new checkpoint and records its path in the state
store; :meth:`ServingModels.get` notices the new path on the next request and swaps the model
in, so ``/predict`` answers with the old model until the new one is complete. Checkpoint paths
are relative to ``MODEL_DIR``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.checkpoints import CheckpointMismatch, load_checkpoint

__all__ = ["Served", "ServingModels"]

logger = logging.getLogger(__name__)


@dataclass
class Served:
    """A loaded model, its checkpoint (relative path) and metadata, the lock its users hold
    while it runs, and the scorer made for it (by the service, on first use; it goes with the
    model when a new checkpoint is swapped in)."""

    model: nn.Module
    checkpoint: str
    meta: dict
    lock: threading.Lock
    scorer: Any = field(default=None, compare=False, repr=False)


class ServingModels:
    """Loads and caches each project's model.

    Parameters
    ----------
    model_dir : path
        ``MODEL_DIR``: checkpoint paths are relative to it.
    device : torch.device
        Where the models run.
    """

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self._models: dict[int, Served] = {}
        self._lock = threading.Lock()

    def get(self, project: int, checkpoint: str | None,
            classes: list[str] | None = None) -> Served | None:
        """The model of ``checkpoint`` (loaded now if it is not the one in memory); None when
        the project has no checkpoint yet.

        Raises
        ------
        ValueError, CheckpointMismatch, OSError
            When the checkpoint cannot be read or was trained for other classes.
        """
        if not checkpoint:
            return None
        with self._lock:
            served = self._models.get(project)
            if served is not None and served.checkpoint == checkpoint:
                return served
            path = self.model_dir / checkpoint
            model, meta = load_checkpoint(path, expected_classes=classes, device=self.device)
            served = Served(model, checkpoint, meta, threading.Lock())
            self._models[project] = served
            logger.info("project %d: serving model %s", project, meta.get("version"))
            return served


__all__ += ["CheckpointMismatch"]
