"""A run's last finished step on disk, so that a stopped run goes on from there."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..engine.files import atomic_write
from .records import SimulatedStep, Tally

log = logging.getLogger(__name__)


class Progress:
    """A run's last finished step on disk (model, labels, tallies, records, random states), so
    that a run stopped, or one asked for more steps later, goes on from there. One file per
    run, replaced atomically after every step; never replaced by an earlier step (a shorter
    run of the same settings leaves a longer one's file alone); a damaged file is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.step: int | None = None  # the step of the file on disk

    def load(self, steps: int) -> dict | None:
        """The saved state if its step is at most ``steps``, else None."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            self.step = int(saved["step"])
        except Exception as exc:
            log.warning("cannot read %s (%s); running from the start", self.path, exc)
            return None
        return saved if self.step <= steps else None

    def save(self, step: int, model: torch.nn.Module, labeled: dict[int, np.ndarray],
             tally: Tally, records: list[SimulatedStep], rng: np.random.Generator,
             anchor: tuple[torch.nn.Module, int] | None = None) -> None:
        """Keep ``step`` (and ``anchor``, the model later steps fine-tune and its images, if
        the run has one)."""
        if self.step is not None and self.step > step:
            return
        keys = sorted(labeled)
        state = {"step": step, "keys": keys,
                 "labels": [torch.from_numpy(np.ascontiguousarray(labeled[i])) for i in keys],
                 "model": cpu_state(model),
                 "tally": asdict(tally), "records": [asdict(r) for r in records],
                 "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
        if anchor is not None:
            state["anchor"] = {"model": cpu_state(anchor[0]), "images": anchor[1]}
        save(self.path, state)
        self.step = step


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save(path: Path, obj: dict) -> None:
    """``torch.save`` that replaces ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        torch.save(obj, handle)

