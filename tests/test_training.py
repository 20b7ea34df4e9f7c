"""Tests for dbsal_backend.engine.training: the recipe, fit and the loss's class weights."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from dbsal_backend.engine import training
from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.labelstudio.label_config import LabelConfigError, parse_label_config
from dbsal_backend.engine.metrics import evaluate
from dbsal_backend.engine.networks import UNet
from dbsal_backend.engine.training import Recipe, class_weights, fit, renews_anchor

NO_LABELS = '<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"/></View>'

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
    assert recipe.trim is None and recipe.ema is None


@pytest.mark.parametrize("kwargs", [
    {"epochs": 0}, {"epochs": True}, {"epochs": 2.0}, {"batch_size": 0}, {"batch_size": 1.5},
    {"lr": 0.0}, {"lr": -1e-3}, {"lr": float("inf")}, {"lr": float("nan")}, {"lr": "0.1"},
    {"weight_decay": -1.0}, {"scale_range": (2.0, 1.0)}, {"scale_range": (0.0, 1.0)},
    {"scale_range": (1.0,)}, {"hflip": "yes"}, {"seed": -1},
    {"self_label": 0}, {"self_label": 1.5}, {"self_label": -0.1}, {"self_label": True},
    {"self_label": "0.9"}, {"self_label_share": 0}, {"self_label_share": 1.01},
    {"self_label_share": True}, {"self_label": 0.9, "self_label_share": 0.2},
    {"ema": 0}, {"ema": 1}, {"ema": 1.5}, {"ema": True}, {"ema": "0.99"},
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


def test_fit_with_ema_ends_with_the_average_of_its_weights(squares, monkeypatch):
    (images, labels), (val_images, val_labels) = squares
    recipe = Recipe(epochs=20, batch_size=4, lr=2e-2, scale_range=None, class_weighted=False,
                    seed=1)
    plain = _tiny_unet()
    fit(plain, images, labels, recipe)
    averages = []
    real = training.WeightAverage

    def kept(model, decay):
        averages.append(real(model, decay))
        return averages[-1]

    monkeypatch.setattr(training, "WeightAverage", kept)
    averaged = _tiny_unet()
    losses = fit(averaged, images, labels, replace(recipe, ema=0.9))
    (average,) = averages
    assert average.updates == 20 * 2  # one update per optimizer step: 8 images, 4 a batch
    state = averaged.state_dict()
    assert all(torch.equal(state[k], average.state[k]) for k in state)  # it ends on the average
    # the same run (same shuffling and augmentation) but its last weights: they differ
    last = plain.state_dict()
    assert any(not torch.equal(state[k], last[k]) for k in state if state[k].is_floating_point())
    assert len(losses) == 20 and not averaged.training
    assert evaluate(averaged, val_images, val_labels, 2)["miou"] > 0.85  # it still learned


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
    with pytest.raises(LabelConfigError, match="no <Label> children"):
        parse_label_config(NO_LABELS)  # the class count enters with the label config


@pytest.mark.parametrize("fine_tune, anchor_images, images, expected", [
    ("first", None, 5, True), ("first", 5, 10, False), ("first", 5, 500, False),
    ("doubling", None, 5, True), ("doubling", 5, 9, False), ("doubling", 5, 10, True),
    ("doubling", 0, 1, True),
    ("last", None, 5, False), ("last", 5, 10, False), ("off", None, 5, False),
])
def test_an_anchor_is_the_first_model_and_under_doubling_each_that_doubles_the_labels(
        fine_tune, anchor_images, images, expected):
    assert renews_anchor(fine_tune, anchor_images, images) is expected


def test_renews_anchor_names_the_fine_tune_values():
    with pytest.raises(ValueError, match="fine_tune must be one of"):
        renews_anchor("chain", None, 5)
