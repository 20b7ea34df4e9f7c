"""Tests for dbsal_backend.training: the recipe, fit, evaluation and checkpoints."""

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from dbsal_backend import training
from dbsal_backend.constants import IGNORE_INDEX
from dbsal_backend.networks import UNet, build_model
from dbsal_backend.training import (
    CheckpointMismatch,
    Recipe,
    class_share_top,
    class_weights,
    confusion_matrix,
    evaluate,
    fit,
    iou_per_class,
    load_checkpoint,
    miou,
    save_checkpoint,
    self_labeled,
)
from dbsal_backend.scoring import Scorer

FAST = Recipe(epochs=20, batch_size=4, lr=2e-2, scale_range=None, class_weighted=False)


def _squares(n: int, seed: int, size=(16, 16)):
    """Dark noisy images with one bright square; class 1 inside the square, 0 outside."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(n):
        height, width = size[k % len(size)] if isinstance(size[0], tuple) else size
        image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        label = np.zeros((height, width), np.uint8)
        side = int(rng.integers(5, 9))
        top, left = rng.integers(0, height - side), rng.integers(0, width - side)
        image[top:top + side, left:left + side] = rng.integers(160, 255, (side, side, 3))
        label[top:top + side, left:left + side] = 1
        images.append(image)
        labels.append(label)
    return images, labels


def _tiny_unet() -> UNet:
    torch.manual_seed(0)
    return UNet(2, base_channels=4, depth=2)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def squares():
    return _squares(8, seed=0), _squares(6, seed=1)


# ---------------------------------------------------------------- the recipe


def test_recipe_defaults():
    recipe = Recipe()
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.weight_decay) == (20, 8, 1e-3, 0.0)
    assert (recipe.class_weighted, recipe.scale_range, recipe.hflip, recipe.seed, recipe.amp) == (
        True, (0.75, 1.25), True, 0, True)
    assert recipe.self_label is None and recipe.self_label_share is None


@pytest.mark.parametrize("kwargs", [
    {"epochs": 0}, {"epochs": True}, {"epochs": 2.0}, {"batch_size": 0}, {"batch_size": 1.5},
    {"lr": 0.0}, {"lr": -1e-3}, {"lr": float("inf")}, {"lr": float("nan")}, {"lr": "0.1"},
    {"weight_decay": -1.0}, {"scale_range": (2.0, 1.0)}, {"scale_range": (0.0, 1.0)},
    {"scale_range": (1.0,)}, {"hflip": "yes"}, {"seed": -1},
    {"self_label": 0}, {"self_label": 1.5}, {"self_label": -0.1}, {"self_label": True},
    {"self_label": "0.9"}, {"self_label_share": 0}, {"self_label_share": 1.01},
    {"self_label_share": True}, {"self_label": 0.9, "self_label_share": 0.2},
])
def test_recipe_validation(kwargs):
    with pytest.raises((TypeError, ValueError)):
        Recipe(**kwargs)


# ---------------------------------------------------------------- fit


def test_fit_learns_a_trivial_task_from_partial_labels(squares):
    (images, labels), (val_images, val_labels) = squares
    rng = np.random.default_rng(5)
    partial = []
    for label in labels:
        label = label.copy()
        label[rng.random(label.shape) < 0.5] = IGNORE_INDEX
        partial.append(label)
    model = _tiny_unet()
    before = evaluate(model, val_images, val_labels, 2)["miou"]
    losses = fit(model, images, partial, FAST)
    after = evaluate(model, val_images, val_labels, 2)["miou"]
    assert len(losses) == FAST.epochs and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0]
    assert before < 0.6 and after > 0.85
    assert not model.training


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\(\)`")
def test_ignored_pixels_give_no_gradient(squares):
    (images, labels), _ = squares
    model = _tiny_unet()
    before = _state(model)
    unlabeled = [np.full_like(label, IGNORE_INDEX) for label in labels]
    losses = fit(model, images, unlabeled, Recipe(epochs=2, batch_size=4, scale_range=None))
    assert all(math.isnan(x) for x in losses)  # every batch unlabeled: no step
    state = model.state_dict()
    assert all(torch.equal(state[k], before[k]) for k in state)


def test_fit_takes_images_of_different_sizes(squares):
    images, labels = _squares(6, seed=2, size=((16, 16), (20, 24), (18, 16)))
    model = _tiny_unet()
    losses = fit(model, images, labels, Recipe(epochs=2, batch_size=3, scale_range=(0.8, 1.2)))
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_fit_is_deterministic_for_a_seed(squares):
    (images, labels), _ = squares
    recipe = Recipe(epochs=2, batch_size=3, lr=1e-2, seed=3)  # with flips and scale jitter
    states = []
    for _ in range(2):
        model = _tiny_unet()
        torch.rand(7)  # other work on the global generator does not matter
        losses = fit(model, images, labels, recipe)
        states.append((_state(model), losses))
    (a, losses_a), (b, losses_b) = states
    assert losses_a == losses_b
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = _tiny_unet()
    fit(other, images, labels, Recipe(epochs=2, batch_size=3, lr=1e-2, seed=4))
    assert not all(torch.equal(a[k], other.state_dict()[k]) for k in a)


def test_fit_fine_tunes_a_trained_model(squares):
    (images, labels), (val_images, val_labels) = squares
    model = _tiny_unet()
    fit(model, images, labels, FAST)
    trained = evaluate(model, val_images, val_labels, 2)["miou"]
    fit(model, images, labels, Recipe(epochs=1, batch_size=4, lr=1e-4, scale_range=None))
    assert evaluate(model, val_images, val_labels, 2)["miou"] > trained - 0.1


def test_class_weighting_changes_the_loss(squares):
    (images, labels), _ = squares
    losses = [fit(_tiny_unet(), images, labels,
                  Recipe(epochs=1, batch_size=4, scale_range=None, class_weighted=weighted))[0]
              for weighted in (False, True)]
    assert losses[0] != pytest.approx(losses[1])


def _trained_and_half_unlabeled(images, labels):
    """A model trained on ``labels``, and the labels with each image's left half unlabeled."""
    model = _tiny_unet()
    fit(model, images, labels, FAST)
    partial = [label.copy() for label in labels]
    for label in partial:
        label[:, : label.shape[1] // 2] = IGNORE_INDEX
    return model, partial


def test_self_labeled_fills_only_unlabeled_pixels_with_confident_prelabels(squares):
    (images, labels), _ = squares
    model, partial = _trained_and_half_unlabeled(images, labels)
    partial[0][:] = 1  # a person's label, even a wrong one, is kept
    filled = self_labeled(model, images, partial, 0.9)
    scorer = Scorer(model, 2, mc_samples=1, max_side=16)
    for image, given, out in zip(images, partial, filled):
        assert out.dtype == given.dtype and out.shape == given.shape
        known = given != IGNORE_INDEX
        np.testing.assert_array_equal(out[known], given[known])
        sure = scorer.confident_prelabels([image], 0.9)[0]
        np.testing.assert_array_equal(out[~known], sure[~known])
    filled_share = np.mean([(f != IGNORE_INDEX).mean() for f in filled[1:]])
    assert filled_share > 0.6  # the unlabeled half is mostly filled
    # the squares are easy: what the model fills in is mostly right
    right = np.mean([(f == t)[(g == IGNORE_INDEX) & (f != IGNORE_INDEX)].mean()
                     for f, g, t in zip(filled[1:], partial[1:], labels[1:])])
    assert right > 0.95
    # a higher threshold fills no more pixels
    strict = self_labeled(model, images, partial, 0.999)
    assert sum((s != IGNORE_INDEX).sum() for s in strict) <= sum((f != IGNORE_INDEX).sum()
                                                                  for f in filled)


def test_class_share_top_keeps_each_class_its_most_confident_share():
    rng = np.random.default_rng(0)
    # class 0 is frequent and sure, class 1 rare and unsure, class 2 never predicted
    predicted = np.r_[np.zeros(900, int), np.ones(100, int)]
    confidence = np.r_[rng.uniform(0.9, 1.0, 900), rng.uniform(0.4, 0.7, 100)]
    order = rng.permutation(predicted.size)
    predicted, confidence = predicted[order], confidence[order]
    for share in (0.01, 0.2, 0.5, 1.0):
        kept = class_share_top(predicted, confidence, 3, share)
        assert kept.dtype == bool and kept.shape == predicted.shape
        for c, n in ((0, 900), (1, 100)):
            assert kept[predicted == c].sum() == int(np.ceil(share * n))
            # the kept ones are the class's most confident
            assert confidence[(predicted == c) & kept].min() >= \
                confidence[(predicted == c) & ~kept].max(initial=0)
    # one threshold of 0.9 would give the rare class nothing; a share gives it its part
    assert (confidence[predicted == 1] >= 0.9).sum() == 0
    # ties (a saturated softmax) still keep the share, the first ones; a 2-D map stays 2-D
    kept = class_share_top(np.zeros((2, 2), int), np.ones((2, 2)), 1, 0.5)
    assert kept.tolist() == [[True, True], [False, False]]
    assert class_share_top(np.zeros(0, int), np.zeros(0), 2, 0.3).shape == (0,)


@pytest.mark.parametrize("predicted, confidence, share, match", [
    (np.zeros(3, int), np.zeros(2), 0.5, "differ"),
    (np.array([0, 3]), np.zeros(2), 0.5, r"in \[0, 3\)"),
    (np.array([-1, 0]), np.zeros(2), 0.5, r"in \[0, 3\)"),
    (np.zeros(2, int), np.zeros(2), 0.0, "share"),
    (np.zeros(2, int), np.zeros(2), True, "share"),
])
def test_class_share_top_validation(predicted, confidence, share, match):
    with pytest.raises(ValueError, match=match):
        class_share_top(predicted, confidence, 3, share)


def test_self_labeled_with_a_share_fills_each_class_its_most_confident_share(squares):
    (images, labels), _ = squares
    model, partial = _trained_and_half_unlabeled(images, labels)
    partial[0][:] = 1  # a person's label is kept, and gives no self-labels
    share = 0.3
    filled = self_labeled(model, images, partial, share=share)
    scorer = Scorer(model, 2, mc_samples=1, max_side=16)
    guesses = [next(scorer.prelabel_confidence([image])) for image in images]
    open_ = [given == IGNORE_INDEX for given in partial]
    predicted = np.concatenate([g[0][o] for g, o in zip(guesses, open_)])
    for out, given, (guess, _), o in zip(filled, partial, guesses, open_):
        assert out.dtype == given.dtype and out.shape == given.shape
        np.testing.assert_array_equal(out[~o], given[~o])  # the person's labels stay
        new = out[o] != IGNORE_INDEX
        np.testing.assert_array_equal(out[o][new], guess[o][new])  # self-labels are pre-labels
    np.testing.assert_array_equal(filled[0], partial[0])
    new = np.concatenate([out[o] for out, o in zip(filled, open_)])
    for c in range(2):
        n = (predicted == c).sum()
        assert n > 0
        assert (new == c).sum() == np.ceil(share * n)  # each class gets its share
    # the easy squares' self-labels are right
    right = np.concatenate([(f == t)[o & (f != IGNORE_INDEX)]
                            for f, t, o in zip(filled[1:], labels[1:], open_[1:])])
    assert right.size and right.mean() > 0.95
    # nothing unlabeled: nothing to fill
    assert [a.tolist() for a in self_labeled(model, images, labels, share=share)] == \
        [a.tolist() for a in labels]


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one"), ({"threshold": 0.9, "share": 0.2}, "exactly one"),
    ({"share": 1.5}, "share"), ({"threshold": 0.0}, "threshold"),
])
def test_self_labeled_validation(squares, kwargs, match):
    (images, labels), _ = squares
    with pytest.raises(ValueError, match=match):
        self_labeled(_tiny_unet(), images, labels, **kwargs)


def test_fit_with_self_labels_trains_on_more_pixels_than_it_was_given(squares, monkeypatch):
    (images, labels), _ = squares
    model, partial = _trained_and_half_unlabeled(images, labels)
    seen = {}
    original = training.SegmentationDataset

    def spy(images, labels, **kwargs):
        if labels:  # Recipe checks its augmentation settings on an empty dataset
            seen.setdefault("labels", labels)
        return original(images, labels, **kwargs)

    monkeypatch.setattr(training, "SegmentationDataset", spy)
    weights = {}
    real_weights = training.class_weights
    monkeypatch.setattr(training, "class_weights",
                        lambda labels, n: weights.setdefault("w", real_weights(labels, n)))
    fit(model, images, partial, Recipe(epochs=1, batch_size=4, scale_range=None,
                                       self_label=0.9))
    given = sum((p != IGNORE_INDEX).sum() for p in partial)
    trained = sum((p != IGNORE_INDEX).sum() for p in seen["labels"])
    assert trained > given
    # the loss weights come from the person's labels alone
    torch.testing.assert_close(weights["w"], real_weights(partial, 2))
    seen.clear()
    fit(model, images, partial, Recipe(epochs=1, batch_size=4, scale_range=None,
                                       self_label_share=0.2))
    shared = sum((p != IGNORE_INDEX).sum() for p in seen["labels"])
    assert given < shared < trained  # the squares are easy: 0.9 fills more than a fifth
    seen.clear()
    fit(model, images, partial, Recipe(epochs=1, batch_size=4, scale_range=None))
    assert sum((p != IGNORE_INDEX).sum() for p in seen["labels"]) == given


def test_fit_needs_images():
    with pytest.raises(ValueError, match="at least one"):
        fit(_tiny_unet(), [], [], FAST)


def test_class_weights_inverse_sqrt_frequency():
    labels = [np.array([[0] * 9 + [1], [0] * 9 + [IGNORE_INDEX]]), np.zeros((2, 4), np.uint8)]
    weights = class_weights(labels, 3)  # counts: 26 of class 0, 1 of class 1, 0 of class 2
    raw = np.array([1 / math.sqrt(26 / 27), 1 / math.sqrt(1 / 27)])
    expected = np.append(raw / raw.mean(), 0.0)
    assert weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(class_weights(np.full((2, 2), IGNORE_INDEX, np.uint8), 2),
                                  [0.0, 0.0])
    with pytest.raises(ValueError, match="label values"):
        class_weights(np.array([[3]]), 3)
    with pytest.raises(TypeError, match="integer"):
        class_weights(np.array([[0.5]]), 3)
    with pytest.raises(ValueError, match="n_classes"):
        class_weights(np.array([[0]]), 0)


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
    assert math.isnan(miou(np.zeros((2, 2), int)))
    with pytest.raises(ValueError, match="pred values"):
        confusion_matrix(np.array([4]), np.array([0]), 4)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros(2, int), np.zeros(3, int), 2)


# ---------------------------------------------------------------- evaluate


class _Threshold(nn.Module):
    """Predicts class 1 where the red channel is above 0.5 (a fixed, known model)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        logit = self.scale * (x[:, :1] - 0.5)
        return torch.cat([-logit, logit], dim=1)


def test_evaluate_with_a_known_model():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, :, 0] = 255  # first row predicted as class 1
    label = np.array([[1, 1, 0], [0, 0, IGNORE_INDEX]], np.uint8)
    model = _Threshold().train()
    scores = evaluate(model, [image], [label], 3)
    # Truth 0 at (0,2), (1,0), (1,1): predicted 1, 0, 0. Truth 1 at (0,0), (0,1): predicted 1, 1.
    np.testing.assert_array_equal(scores["confusion"], [[2, 1, 0], [0, 2, 0], [0, 0, 0]])
    np.testing.assert_allclose(scores["iou"][:2], [2 / 3, 2 / 3])
    assert np.isnan(scores["iou"][2])
    assert scores["miou"] == pytest.approx(2 / 3)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 5)
    assert model.training  # mode restored


def test_evaluate_runs_at_the_working_size_and_scores_at_full_size():
    image = np.zeros((16, 24, 3), np.uint8)
    image[:, :12, 0] = 255
    label = np.zeros((16, 24), np.uint8)
    label[:, :12] = 1
    model = _Threshold()
    scores = evaluate(model, [image], [label], 2, max_side=8)
    assert model.sizes == [(5, 8)]  # fit_side: the longer side shrunk to 8
    assert scores["confusion"].sum() == 16 * 24  # every full-size label pixel is scored
    assert scores["pixel_accuracy"] > 0.9
    # Labels larger than the image (an image already at the working size): logits are resized.
    small = image[::2, ::2]
    scores = evaluate(_Threshold(), [small], [label], 2)
    assert scores["confusion"].sum() == 16 * 24 and scores["pixel_accuracy"] > 0.9


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
