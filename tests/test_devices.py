"""Tests for dbsal_backend.engine.devices: which torch device a run uses."""

import pytest
import torch

from dbsal_backend.engine import devices
from dbsal_backend.engine.devices import pick_device


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("gpu")
