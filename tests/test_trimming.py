"""Tests for dbsal_backend.engine.trimming: leaving out the labels the model finds least likely."""

import numpy as np
import pytest

from dbsal_backend.engine import training
from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.engine.scoring import Scorer
from dbsal_backend.engine.training import Recipe, fit
from dbsal_backend.engine.trimming import least_likely, trimmed
from test_training import FAST, _trained_and_half_unlabeled, squares  # noqa: F401 (fixture)


def test_least_likely_leaves_out_each_class_its_least_likely_share():
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2, IGNORE_INDEX], np.uint8), size=(30, 40),
                        p=[0.6, 0.25, 0.05, 0.1])
    probability = rng.uniform(size=labels.shape)
    for share in (0.01, 0.2, 0.5):
        out = least_likely(labels, probability, share)
        assert out.dtype == bool and out.shape == labels.shape
        assert not out[labels == IGNORE_INDEX].any()  # nothing to leave out there
        for c in (0, 1, 2):
            mine = labels == c
            assert out[mine].sum() == int(share * mine.sum())
            # the ones left out are the class's least likely
            assert probability[mine & out].max(initial=0) <= probability[mine & ~out].min()
    # a class of too few pixels for one loses none; ties go by position
    out = least_likely(np.array([[0, 0, 1]], np.uint8), np.ones((1, 3)), 0.5)
    assert out.tolist() == [[True, False, False]]
    assert not least_likely(np.full((2, 2), IGNORE_INDEX, np.uint8), np.ones((2, 2)), 0.5).any()


@pytest.mark.parametrize("share", [0, -0.1, 0.6, 1, True, "0.2", None, float("nan")])
def test_the_share_is_checked(share):
    with pytest.raises(ValueError, match=r"\(0, 0.5\]"):
        least_likely(np.zeros((2, 2), np.uint8), np.ones((2, 2)), share)
    if share is not None:  # None: off
        with pytest.raises(ValueError, match=r"Recipe.trim must be in \(0, 0.5\]"):
            Recipe(trim=share)


def test_least_likely_needs_one_shape():
    with pytest.raises(ValueError, match="differ"):
        least_likely(np.zeros((2, 2), np.uint8), np.ones((2, 3)), 0.2)


def test_label_probability_is_the_models_probability_of_each_given_label(squares):
    (images, labels), _ = squares
    model, _ = _trained_and_half_unlabeled(images, labels)
    weights = np.array([0.5, 1.5])
    scorer = Scorer(model, 2, mc_samples=1, max_side=16, class_weights=weights)
    for image, label in zip(images[:3], labels[:3]):
        given = label.copy()
        given[:2] = IGNORE_INDEX
        given[2:4] = 1 - given[2:4]  # wrong labels: their probability is the other class's
        probability = next(scorer.label_probability([image], [given]))
        predicted, confidence = next(scorer.prelabel_confidence([image]))
        assert probability.dtype == np.float32 and probability.shape == label.shape
        assert (probability[:2] == 1).all()
        same = (given == predicted)
        np.testing.assert_allclose(probability[same], confidence[same], rtol=1e-5)
        other = (given != predicted) & (given != IGNORE_INDEX)  # two classes: 1 - the top one
        np.testing.assert_allclose(probability[other], 1 - confidence[other], atol=1e-5)
    with pytest.raises(ValueError, match="labels of shape"):
        next(scorer.label_probability([images[0]], [labels[0][:-1]]))


def test_trimmed_leaves_out_the_wrong_labels_first(squares):
    (images, labels), _ = squares
    model, _ = _trained_and_half_unlabeled(images, labels)
    noisy = [label.copy() for label in labels]
    rng = np.random.default_rng(1)
    wrong = [rng.uniform(size=label.shape) < 0.1 for label in labels]
    for label, flip in zip(noisy, wrong):
        label[flip] = 1 - label[flip]
    before = [label.copy() for label in noisy]
    out = trimmed(model, images, noisy, 0.2)
    for given, kept, flip, was in zip(noisy, out, wrong, before):
        np.testing.assert_array_equal(given, was)  # the given labels are not changed
        assert kept.dtype == given.dtype and kept.shape == given.shape
        left = kept == IGNORE_INDEX
        np.testing.assert_array_equal(kept[~left], given[~left])
        for c in (0, 1):
            assert left[given == c].sum() == int(0.2 * (given == c).sum())
    # a model that learned the squares finds the flipped labels least likely: most of them are
    # left out (69%; a random choice of as many pixels would leave out 20% of each kind)
    left = np.concatenate([(k == IGNORE_INDEX).ravel() for k in out])
    flipped = np.concatenate([f.ravel() for f in wrong])
    assert left[flipped].mean() > 0.6 > 4 * left[~flipped].mean()


def test_fit_trims_before_it_trains_and_never_without_the_setting(squares, monkeypatch):
    (images, labels), _ = squares
    model, _ = _trained_and_half_unlabeled(images, labels)
    seen = []
    real = training.trimmed
    monkeypatch.setattr(training, "trimmed", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    fit(model, images, labels, FAST)
    assert seen == []
    losses = fit(model, images, labels, Recipe(**{**FAST.__dict__, "trim": 0.2}))
    assert seen == [0.2] and np.isfinite(losses).all()


def test_trimmed_keeps_the_exact_images_whole(squares):
    (images, labels), _ = squares
    model, _ = _trained_and_half_unlabeled(images, labels)
    exact = [i % 2 == 0 for i in range(len(labels))]
    out = trimmed(model, images, labels, 0.2, exact=exact)
    every = trimmed(model, images, labels, 0.2)
    for given, kept, all_trimmed, whole in zip(labels, out, every, exact):
        if whole:  # given pixel by pixel: nothing left out
            np.testing.assert_array_equal(kept, given)
        else:  # the same as without flags
            np.testing.assert_array_equal(kept, all_trimmed)
            assert (kept == IGNORE_INDEX).any()
    with pytest.raises(ValueError, match="3 flags for"):
        trimmed(model, images, labels, 0.2, exact=[True] * 3)


def test_fit_passes_the_exact_flags_to_trimming(squares, monkeypatch):
    (images, labels), _ = squares
    model, _ = _trained_and_half_unlabeled(images, labels)
    seen = []
    real = training.trimmed
    monkeypatch.setattr(training, "trimmed",
                        lambda *a, **k: seen.append(a[6]) or real(*a, **k))
    exact = [True] + [False] * (len(labels) - 1)
    fit(model, images, labels, Recipe(**{**FAST.__dict__, "trim": 0.2}), exact=exact)
    assert seen == [exact]
