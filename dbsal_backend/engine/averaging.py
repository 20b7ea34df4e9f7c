"""An exponential moving average of a model's weights over a training run (Polyak averaging).

:class:`WeightAverage` keeps a copy of the model's state (its parameters and its batch-norm
statistics) and moves it toward the model after each optimizer step, with the decay
``min(decay, (1 + t) / (10 + t))`` at update ``t``: a short horizon while the run is young
(a run of a few steps averages its last few), the full ``decay`` later (the warm-up of
timm's ``ModelEmaV2``). :func:`~dbsal_backend.engine.training.fit` ends the run with the average
when :attr:`~dbsal_backend.engine.training.Recipe.ema` is set.
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import is_number

__all__ = ["WeightAverage", "check_decay"]


def check_decay(name: str, value) -> None:
    """``value`` must be a number in ``(0, 1)`` (a decay of 1 would never move)."""
    if not is_number(value) or not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


class WeightAverage:
    """The moving average of ``model``'s state, started at its current state.

    Floating-point entries (weights, batch-norm means and variances) are averaged; the others
    (batch-norm's step counters) follow the model.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        check_decay("decay", decay)
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s state (after an optimizer step)."""
        weight = 1.0 - self.current_decay()
        for key, value in model.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.dtype), weight)
            else:
                average.copy_(value)
        self.updates += 1

    def copy_to(self, model: nn.Module) -> None:
        """Load the average into ``model``."""
        model.load_state_dict(self.state)
