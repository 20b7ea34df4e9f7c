"""Tests for dbsal_backend.engine.averaging: the moving average of a model's weights."""

import numpy as np
import pytest
import torch
from torch import nn

from dbsal_backend.engine.averaging import WeightAverage


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def _shift(model: nn.Module, by: float) -> None:
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(by)


def test_the_average_starts_at_the_model_and_stays_there_while_it_does_not_move():
    model = _model()
    average = WeightAverage(model, 0.99)
    for _ in range(5):
        average.update(model)
    state = model.state_dict()
    assert all(torch.equal(average.state[k], state[k]) for k in state)


def test_the_decay_warms_up_to_its_value():
    average = WeightAverage(_model(), 0.9)
    decays = []
    for _ in range(100):
        decays.append(average.current_decay())
        average.update(_model())
    assert decays[0] == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the first update moves far
    assert decays == sorted(decays) and decays[-1] == 0.9
    assert decays[80] == 0.9 and decays[79] < 0.9  # (1 + t) / (10 + t) >= 0.9 from t = 80


def test_each_update_moves_the_average_toward_the_model_by_one_minus_the_decay():
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, 0.5)  # decays 0.1 at the first update, then 2/11, ...
    _shift(model, 1.0)
    model[1].num_batches_tracked.fill_(7)
    average.update(model)
    for key, value in average.state.items():
        if value.is_floating_point():  # weights and batch-norm statistics: averaged
            assert torch.allclose(value, start[key] + 0.9)
    assert average.state["1.num_batches_tracked"].item() == 7  # a counter follows the model
    average.update(model)
    assert torch.allclose(average.state["0.weight"], start["0.weight"] + 0.9 + 0.1 * 9 / 11)


def test_copy_to_loads_the_average_and_the_copy_is_not_shared():
    model = _model()
    average = WeightAverage(model, 0.5)
    _shift(model, 1.0)
    average.copy_to(model)
    assert torch.equal(model.state_dict()["0.weight"], average.state["0.weight"])
    _shift(model, 1.0)  # the model's later steps do not move the average
    assert not torch.equal(model.state_dict()["0.weight"], average.state["0.weight"])


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, True, "0.9", None])
def test_the_decay_is_in_the_open_unit_interval(decay):
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(_model(), decay)


def test_a_numpy_decay_is_a_decay():
    assert WeightAverage(_model(), np.float32(0.9)).decay == pytest.approx(0.9)
