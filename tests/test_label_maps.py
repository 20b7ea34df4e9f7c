"""Tests for dbsal_backend.engine.label_maps: per-class pixel counts and the one class-weight function.

The weights replace two functions, ``training.class_weights`` (the loss) and
``active.class_balance_weights`` (class-balanced acquisition). Their code as it was is kept
below as the reference: both call sites must give the very same numbers as before.
"""

import numpy as np
import pytest
import torch

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.labelstudio.label_config import LabelConfigError, parse_label_config
from dbsal_backend.engine.label_maps import inverse_sqrt_weights, pixel_counts
from dbsal_backend.engine.training import class_weights

NO_LABELS = '<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"/></View>'


def _old_class_weights(labels, n_classes, ignore_index=IGNORE_INDEX):
    """``training.class_weights`` before label_maps (commit 2ee1efb), validation left out."""
    arrays = [labels] if isinstance(labels, np.ndarray) else list(labels)
    counts = np.zeros(n_classes, dtype=np.int64)
    for array in arrays:
        values = np.asarray(array)[np.asarray(array) != ignore_index].astype(np.int64)
        counts += np.bincount(values.ravel(), minlength=n_classes)
    present = counts > 0
    weights = np.zeros(n_classes, dtype=np.float64)
    if present.any():
        weights[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
        weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def _old_class_balance_weights(pixel_counts):
    """``active.class_balance_weights`` before label_maps (commit 2ee1efb)."""
    counts = np.asarray(pixel_counts, dtype=np.float64)
    weights = np.ones(counts.size)
    seen = counts > 0
    if seen.any():
        weights[seen] = 1.0 / np.sqrt(counts[seen] / counts.sum())
        weights[seen] /= weights[seen].mean()
        weights[~seen] = weights[seen].max()
    return weights


def _old_service_counts(labels, n_classes):
    """How ``Service.run`` counted before (float64, values past the classes cut off)."""
    counts = np.zeros(n_classes)
    for label_map in labels:
        counts += np.bincount(label_map[label_map != IGNORE_INDEX],
                              minlength=n_classes)[:len(counts)]
    return counts


def _label_sets():
    rng = np.random.default_rng(0)
    for n_classes in (1, 2, 3, 11, 32):
        for trial in range(20):
            maps = []
            for _ in range(int(rng.integers(0, 5))):
                shape = tuple(int(s) for s in rng.integers(1, 40, 2))
                present = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)),
                                     replace=False)
                label = rng.choice(present, size=shape).astype(np.uint8)
                label[rng.random(shape) < rng.uniform(0, 1)] = IGNORE_INDEX
                maps.append(label)
            yield n_classes, maps
    yield 3, [np.full((4, 4), IGNORE_INDEX, np.uint8)]  # nothing labeled
    yield 2, [np.zeros((2000, 3000), np.uint8), np.ones((5, 5), np.uint8)]  # far apart


def test_both_old_call_sites_give_the_same_numbers():
    checked = 0
    for n_classes, maps in _label_sets():
        # the loss (training.fit, Service._train, Simulation.scorer): float32, unseen 0
        new = class_weights(maps, n_classes)
        assert new.dtype == torch.float32
        assert torch.equal(new, _old_class_weights(maps, n_classes))
        # class-balanced acquisition (Service._step, Simulation.step): float64, unseen rarest
        old_counts = _old_service_counts(maps, n_classes)
        counts = pixel_counts(maps, n_classes)
        np.testing.assert_array_equal(counts, old_counts)
        old = _old_class_balance_weights(old_counts)
        np.testing.assert_array_equal(inverse_sqrt_weights(counts, "rarest"), old)
        np.testing.assert_array_equal(inverse_sqrt_weights(old_counts, "rarest"), old)
        if maps:  # the simulator summed int64 bincounts
            summed = sum(np.bincount(m[m != IGNORE_INDEX], minlength=n_classes) for m in maps)
            np.testing.assert_array_equal(inverse_sqrt_weights(summed, "rarest"),
                                          _old_class_balance_weights(summed))
        checked += 1
    assert checked == 102


def test_the_numbers_computed_with_the_old_code():
    # Computed with commit 2ee1efb's training.class_weights and active.class_balance_weights.
    labels = [np.array([[0, 0, 1, 2], [2, 2, IGNORE_INDEX, 0]], np.uint8),
              np.array([[0, 0, 0, IGNORE_INDEX]], np.uint8)]
    assert class_weights(labels, 4).tolist() == [0.6168139576911926, 1.510879397392273,
                                                 0.8723066449165344, 0.0]
    counts = pixel_counts(labels, 4)
    assert counts.tolist() == [6, 1, 3, 0] and counts.dtype == np.int64
    assert inverse_sqrt_weights(counts, "rarest").tolist() == [
        0.6168139402787047, 1.5108794199183628, 0.8723066398029325, 1.5108794199183628]


def test_inverse_sqrt_weights_by_hand():
    raw = np.array([1 / np.sqrt(0.8), 1 / np.sqrt(0.2)])
    expected = raw / raw.mean()
    np.testing.assert_allclose(inverse_sqrt_weights([100, 25, 0], "rarest"),
                               [expected[0], expected[1], expected[1]])
    np.testing.assert_allclose(inverse_sqrt_weights([100, 25, 0]), [*expected, 0.0])
    np.testing.assert_array_equal(inverse_sqrt_weights([0, 0, 0], "rarest"), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(inverse_sqrt_weights([0, 0, 0]), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(inverse_sqrt_weights([5, 5], "rarest"), [1.0, 1.0])
    with pytest.raises(ValueError, match="unseen"):
        inverse_sqrt_weights([1, 2], "max")


def test_pixel_counts_skips_unlabeled_pixels_and_checks_the_values():
    label = np.array([[0, 1, IGNORE_INDEX], [1, 1, 2]], np.uint8)
    assert pixel_counts(label, 4).tolist() == [1, 3, 1, 0]
    assert pixel_counts([label, label[:1]], 3).tolist() == [2, 4, 1]
    assert pixel_counts([], 2).tolist() == [0, 0]
    assert pixel_counts(iter([label]), 3).tolist() == [1, 3, 1]  # any iterable
    with pytest.raises(ValueError, match="label values"):
        pixel_counts(label, 2)
    with pytest.raises(TypeError, match="integer"):
        pixel_counts(np.array([[0.5]]), 3)
    with pytest.raises(LabelConfigError, match="no <Label> children"):
        parse_label_config(NO_LABELS)  # the class count enters with the label config
