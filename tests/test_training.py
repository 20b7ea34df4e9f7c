"""Tests for dbsal_backend.training: learning, scoring, early stopping, checkpoints."""

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from dbsal_backend import training
from dbsal_backend.constants import IGNORE_INDEX
from dbsal_backend.data import SegmentationDataset
from dbsal_backend.networks import UNet, build_model
from dbsal_backend.training import (
    CheckpointMismatch,
    TrainConfig,
    class_weights,
    confusion_matrix,
    evaluate,
    iou_per_class,
    load_checkpoint,
    make_train_dataset,
    miou,
    predict_probs,
    save_checkpoint,
    train,
)

FAST = dict(epochs=15, batch_size=4, lr=1e-2, scale_range=None, progress=False, device="cpu")


def _squares(n: int, seed: int, size: int = 32):
    """Dark noisy images with one bright square; class 1 inside the square, 0 outside."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        side = rng.integers(8, 16)
        top, left = rng.integers(0, size - side, 2)
        image[top:top + side, left:left + side] = rng.integers(160, 255, (side, side, 3))
        label[top:top + side, left:left + side] = 1
        images.append(image)
        labels.append(label)
    return images, labels


def _tiny_unet() -> UNet:
    torch.manual_seed(0)
    return UNet(2, base_channels=8, depth=3)


@pytest.fixture(scope="module")
def square_data():
    return _squares(16, seed=0), SegmentationDataset(*_squares(8, seed=1))


def test_unet_learns_the_square_task(square_data):
    (images, labels), val_ds = square_data
    model = _tiny_unet()
    before = evaluate(model, val_ds, 2)["miou"]
    result = train(model, SegmentationDataset(images, labels, hflip=True), val_ds,
                   TrainConfig(**FAST))
    after = evaluate(model, val_ds, 2)
    assert before < 0.6 and after["miou"] > 0.8
    assert after["miou"] == pytest.approx(result.best_miou)
    assert len(result.history) == result.history[-1].epoch
    assert result.history[-1].loss < result.history[0].loss
    assert not model.training


def test_unet_learns_from_partial_labels(square_data):
    (images, labels), val_ds = square_data
    rng = np.random.default_rng(5)
    partial = []
    for label in labels:
        label = label.copy()
        label[rng.random(label.shape) < 0.5] = IGNORE_INDEX
        partial.append(label)
    model = _tiny_unet()
    train(model, SegmentationDataset(images, partial, hflip=True), None, TrainConfig(**FAST))
    assert evaluate(model, val_ds, 2)["miou"] > 0.8


def test_all_ignore_batch_gives_no_nan(square_data):
    (images, labels), _ = square_data
    labels = [labels[0], np.full_like(labels[1], IGNORE_INDEX), labels[2]]
    model = _tiny_unet()
    config = TrainConfig(**{**FAST, "epochs": 2, "batch_size": 1})
    result = train(model, SegmentationDataset(images[:3], labels), None, config)
    assert [stats.skipped_batches for stats in result.history] == [1, 1]
    assert all(math.isfinite(stats.loss) for stats in result.history)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_training_is_deterministic_given_the_seed(square_data):
    (images, labels), _ = square_data
    config = TrainConfig(**{**FAST, "epochs": 2, "scale_range": (0.75, 1.25), "crop_size": 24})
    states = []
    for _ in range(2):
        model = _tiny_unet()
        train(model, make_train_dataset(images, labels, config), None, config)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_class_weighted_loss_differs(square_data):
    (images, labels), _ = square_data
    losses = []
    for weighted in (False, True):
        config = TrainConfig(**{**FAST, "epochs": 1, "class_weighted": weighted})
        result = train(_tiny_unet(), SegmentationDataset(images, labels), None, config)
        losses.append(result.history[0].loss)
    assert losses[0] != pytest.approx(losses[1])


def test_class_weights_inverse_sqrt_frequency():
    labels = [np.array([[0] * 9 + [1], [0] * 9 + [IGNORE_INDEX]]), np.zeros((2, 4), np.uint8)]
    weights = class_weights(labels, 3)  # counts: 26 of class 0, 1 of class 1, 0 of class 2
    raw = np.array([1 / math.sqrt(26 / 27), 1 / math.sqrt(1 / 27)])
    expected = np.append(raw / raw.mean(), 0.0)
    assert weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="label values"):
        class_weights(np.array([[3]]), 3)


def test_confusion_matrix_and_miou_by_hand():
    target = np.array([[0, 0, 1, 1], [2, 2, IGNORE_INDEX, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 3]])
    cm = confusion_matrix(pred, target, 4)
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    # IoU: class 0 = 1/(2+2-1), 1 = 2/(3+3-2), 2 = 1/(2+1-1), 3 = 0/(0+1-0)
    np.testing.assert_allclose(iou_per_class(cm), [1 / 3, 1 / 2, 1 / 2, 0.0])
    assert miou(cm) == pytest.approx((1 / 3 + 1 / 2 + 1 / 2 + 0) / 4)
    absent = confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3)
    assert np.isnan(iou_per_class(absent)[2]) and miou(absent) == 1.0
    with pytest.raises(ValueError, match="pred values"):
        confusion_matrix(np.array([4]), np.array([0]), 4)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros(2, int), np.zeros(3, int), 2)


class _Threshold(nn.Module):
    """Predicts class 1 where the red channel is above 0.5 (a fixed, known model)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        logit = self.scale * (x[:, :1] - 0.5)
        return torch.cat([-logit, logit], dim=1)


def test_evaluate_and_predict_probs_with_a_known_model():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, :, 0] = 255  # first row predicted as class 1
    label = np.array([[1, 1, 0], [0, 0, IGNORE_INDEX]], np.uint8)
    model = _Threshold().train()
    scores = evaluate(model, SegmentationDataset([image], [label]), 3)
    # Truth 0 at (0,2), (1,0), (1,1): predicted 1, 0, 0. Truth 1 at (0,0), (0,1): predicted 1, 1.
    np.testing.assert_array_equal(scores["confusion"], [[2, 1, 0], [0, 2, 0], [0, 0, 0]])
    np.testing.assert_allclose(scores["iou"][:2], [2 / 3, 2 / 3])
    assert np.isnan(scores["iou"][2])
    assert scores["miou"] == pytest.approx(2 / 3)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 5)
    assert model.training  # mode restored
    probs = predict_probs(model, image)
    assert probs.shape == (2, 2, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-6)
    assert (probs[1, 0] > 0.5).all() and (probs[1, 1] < 0.5).all()


def _scripted_evaluate(monkeypatch, mious):
    """Make train() see the given validation mIoUs, one per epoch."""
    scores = iter(mious)
    monkeypatch.setattr(training, "evaluate", lambda *args, **kwargs: {"miou": next(scores)})


def test_early_stopping_restores_the_best_weights(monkeypatch, square_data):
    (images, labels), val_ds = square_data
    _scripted_evaluate(monkeypatch, [0.5, 0.7, 0.6, 0.65, 0.4, 0.9, 0.9])
    snapshots = {}
    model = _tiny_unet()

    def remember(stats):
        snapshots[stats.epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    config = TrainConfig(**{**FAST, "epochs": 7, "patience": 3, "lr_patience": 2})
    result = train(model, SegmentationDataset(images[:4], labels[:4]), val_ds, config, remember)
    assert result.stopped_early and not result.stopped_by_callback
    assert [s.epoch for s in result.history] == [1, 2, 3, 4, 5]
    assert result.best_epoch == 2 and result.best_miou == 0.7
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[2][k]) for k in state)
    assert not all(torch.equal(state[k], snapshots[5][k]) for k in state)
    # Two epochs without improvement (3, 4) -> the learning rate of epoch 5 is x0.1.
    assert [s.lr for s in result.history] == pytest.approx([1e-2] * 4 + [1e-3])


def test_callback_can_stop_training(square_data):
    (images, labels), _ = square_data
    result = train(_tiny_unet(), SegmentationDataset(images[:4], labels[:4]), None,
                   TrainConfig(**FAST), callback=lambda stats: stats.epoch == 2)
    assert result.stopped_by_callback and not result.stopped_early
    assert len(result.history) == 2 and result.best_epoch == 2 and math.isnan(result.best_miou)


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"lr": 0.0}, {"batch_size": 1.5},
                                    {"scale_range": (2.0, 1.0)}, {"crop_size": -1}])
def test_train_config_validates(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_make_train_dataset_uses_the_augmentation_settings():
    config = TrainConfig(crop_size=(8, 12), scale_range=None, hflip=False, seed=4)
    ds = make_train_dataset(*_squares(2, seed=0), config)
    assert (ds.crop_size, ds.scale_range, ds.hflip, ds.seed) == ((8, 12), None, False, 4)
    assert ds[0][0].shape == (3, 8, 12)


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
    loaded, meta = load_checkpoint(path, expected_classes=META["classes"],
                                   expected_arch="efficientnet_lite0")
    assert meta == META and not loaded.training
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_mismatch_raises(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, _model(), META)
    with pytest.raises(CheckpointMismatch, match="classes"):
        load_checkpoint(path, expected_classes=["sky", "road"])
    with pytest.raises(CheckpointMismatch, match="unet"):
        load_checkpoint(path, expected_arch="unet")
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

    monkeypatch.setattr(training.torch, "save", failing_save)
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
