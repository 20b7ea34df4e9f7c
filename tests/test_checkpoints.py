"""Tests for dbsal_backend.engine.checkpoints: round trips, mismatches, damaged files, atomic writes."""

import os

import pytest
import torch

from dbsal_backend.engine import checkpoints
from dbsal_backend.engine.checkpoints import CheckpointMismatch, load_checkpoint, save_checkpoint
from dbsal_backend.engine.networks import build_model


META = {"arch": "efficientnet_lite0", "classes": ["sky", "road", "car"],
        "settings": {"epochs": 3, "scale_range": [0.75, 1.25]}}


def _model():
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", 3, pretrained=False)
    with torch.no_grad():  # make the batch-norm statistics non-default
        model.train()(torch.rand(2, 3, 32, 32))
    return model.eval()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = _model()
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, META)
    loaded, meta = load_checkpoint(path, expected_classes=META["classes"])
    assert meta == META and not loaded.training
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_mismatch_raises(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, _model(), META)
    with pytest.raises(CheckpointMismatch, match="classes"):
        load_checkpoint(path, expected_classes=["sky", "road"])
    assert issubclass(CheckpointMismatch, ValueError)


def test_checkpoint_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dbsal checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    model = _model()
    save_checkpoint(path, model, META)
    before = path.read_bytes()

    def failing_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, {**META, "settings": {"epochs": 4}})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pt"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path)[1] == META


def test_save_checkpoint_validates_meta(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="missing"):
        save_checkpoint(tmp_path / "m.pt", model, {"arch": "unet"})
    with pytest.raises(ValueError, match="outputs"):
        save_checkpoint(tmp_path / "m.pt", model, {**META, "classes": ["a", "b"]})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "m.pt", model, {**META, "settings": {"x": object()}})
    assert not (tmp_path / "m.pt").exists()
