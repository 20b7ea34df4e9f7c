"""Tests for dbsal_backend.engine.self_labels: confident pre-labels where nobody labeled."""

import numpy as np
import pytest

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.engine.scoring import Scorer
from dbsal_backend.engine.self_labels import class_share_top, self_labeled
from dbsal_backend.engine.training import Recipe
from test_training import _tiny_unet, _trained_and_half_unlabeled, squares  # noqa: F401 (fixture)


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
])
def test_class_share_top_validation(predicted, confidence, share, match):
    with pytest.raises(ValueError, match=match):
        class_share_top(predicted, confidence, 3, share)


@pytest.mark.parametrize("fields, match", [
    ({"self_label_share": 0.0}, "self_label_share"), ({"self_label_share": True}, "self_label_share"),
    ({"self_label_share": 1.5}, "self_label_share"), ({"self_label": 0.0}, "self_label"),
])
def test_the_share_and_threshold_are_checked_in_the_recipe(fields, match):
    """Where they enter: a Recipe (from the settings); self_labeled trusts them."""
    with pytest.raises(ValueError, match=match):
        Recipe(**fields)


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
])
def test_self_labeled_validation(squares, kwargs, match):
    (images, labels), _ = squares
    with pytest.raises(ValueError, match=match):
        self_labeled(_tiny_unet(), images, labels, **kwargs)
