"""Tests for dbsal_backend.engine.regions: superpixel summaries, adjacency and regions to review."""

import numpy as np
import pytest

from dbsal_backend.engine.active import QueryPolicy
from dbsal_backend.engine.regions import (
    Region,
    adjacent_pairs,
    build_regions,
    region_map,
    smooth_labels,
    superpixel_table,
)


def grid(rows=3, cols=4, block=2):
    """Superpixels as ``block x block`` tiles, ids row-major (``rows x cols`` tiles)."""
    r, c = np.indices((rows * block, cols * block))
    return (r // block) * cols + c // block


def table_of(superpixels, uncertainty_per_sp, label_per_sp, n_classes=3):
    return superpixel_table(superpixels, np.asarray(uncertainty_per_sp, float)[superpixels],
                            np.asarray(label_per_sp)[superpixels], n_classes)


def test_table_matches_a_loop():
    rng = np.random.default_rng(0)
    sp = rng.integers(0, 7, size=(9, 11))
    sp[0, 0] = 8  # id 7 is empty
    u = rng.random(sp.shape).astype(np.float32)
    predicted = rng.integers(0, 4, size=sp.shape)
    table = superpixel_table(sp, u, predicted, 4)
    assert len(table) == 9
    for i in range(9):
        members = sp == i
        assert table.size[i] == members.sum()
        expected = u[members].astype(np.float64).mean() if members.any() else 0.0
        assert table.uncertainty[i] == pytest.approx(expected, rel=1e-12)
        if members.any():
            assert table.label[i] == np.bincount(predicted[members], minlength=4).argmax()
    assert table.size[7] == 0 and table.uncertainty[7] == 0.0


def test_table_dominant_class_ties_go_to_the_lower_class():
    sp = np.array([[0, 0, 1, 1, 1, 1]])
    predicted = np.array([[2, 1, 3, 0, 0, 3]])
    table = superpixel_table(sp, np.zeros(sp.shape), predicted, 4)
    np.testing.assert_array_equal(table.label, [1, 0])
    np.testing.assert_array_equal(table.size, [2, 4])


def test_table_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        superpixel_table(np.zeros((2, 2), int), np.zeros((2, 3)), np.zeros((2, 2), int), 2)


def test_adjacent_pairs_are_the_4_connected_touching_ones():
    sp = np.array([[0, 0, 1],
                   [2, 3, 1],
                   [2, 2, 2]])
    # 0-1, 0-2, 0-3, 1-3, 1-2, 2-3; 0 and 1 touch at (0,1)-(0,2); diagonal contacts do not count
    expected = {(0, 1), (0, 2), (0, 3), (1, 3), (1, 2), (2, 3)}
    pairs = adjacent_pairs(sp)
    assert pairs.dtype == np.int64 and pairs.shape[1] == 2
    assert {tuple(p) for p in pairs.tolist()} == expected and len(pairs) == len(expected)
    diagonal = np.array([[0, 1], [1, 0]])
    assert {tuple(p) for p in adjacent_pairs(diagonal).tolist()} == {(0, 1)}
    checker = np.array([[0, 1], [2, 0]])  # 0 and 0 touch only diagonally: no (0, 0) pair
    assert {tuple(p) for p in adjacent_pairs(checker).tolist()} == {(0, 1), (0, 2)}
    assert adjacent_pairs(np.zeros((3, 3), int)).shape == (0, 2)


def test_adjacent_pairs_match_a_loop():
    rng = np.random.default_rng(1)
    sp = rng.integers(0, 6, size=(7, 8))
    expected = set()
    for y in range(7):
        for x in range(8):
            for dy, dx in ((0, 1), (1, 0)):
                if y + dy < 7 and x + dx < 8 and sp[y, x] != sp[y + dy, x + dx]:
                    a, b = sorted((int(sp[y, x]), int(sp[y + dy, x + dx])))
                    expected.add((a, b))
    assert {tuple(p) for p in adjacent_pairs(sp).tolist()} == expected


# 3 x 4 tiles of 2 x 2 pixels:
#   0  1  2  3
#   4  5  6  7
#   8  9 10 11
SP = grid()
LABELS = np.array([1, 1, 2, 1,
                   0, 1, 2, 1,
                   0, 0, 0, 1])
UNCERTAINTY = np.linspace(0.9, 0.2, 12)


def test_connected_grouping_joins_connected_same_class_groups_only():
    table = table_of(SP, UNCERTAINTY, LABELS)
    # queried: 0, 1, 5 (class 1, connected); 2, 6 (class 2, touching the class-1 group);
    # 3 (class 1, not connected to 0/1/5 through queried class-1 tiles); 8, 9 (class 0).
    queried = [0, 1, 5, 2, 6, 3, 8, 9]
    regions = build_regions(table, queried, grouping="connected", pairs=adjacent_pairs(SP))
    groups = {r.superpixels: r.label for r in regions}
    assert groups == {(0, 1, 5): 1, (2, 6): 2, (3,): 1, (8, 9): 0}
    for region in regions:
        assert region.pixels == 4 * len(region.superpixels)
        assert len({int(LABELS[i]) for i in region.superpixels}) == 1  # never mixed classes


def test_same_class_groups_apart_stay_separate():
    labels = np.zeros(12, int)
    table = table_of(SP, UNCERTAINTY, labels, n_classes=1)
    regions = build_regions(table, [0, 1, 10, 11], grouping="connected", pairs=adjacent_pairs(SP))
    assert sorted(r.superpixels for r in regions) == [(0, 1), (10, 11)]
    # Joined through a queried tile of the same class, they become one.
    regions = build_regions(table, [0, 1, 2, 6, 7, 11], grouping="connected", pairs=adjacent_pairs(SP))
    assert [r.superpixels for r in regions] == [(0, 1, 2, 6, 7, 11)]


def test_superpixel_grouping_makes_every_superpixel_a_region():
    table = table_of(SP, UNCERTAINTY, LABELS)
    regions = build_regions(table, [5, 0, 1, 5], grouping="superpixel")
    assert sorted(r.superpixels for r in regions) == [(0,), (1,), (5,)]
    assert [r.label for r in sorted(regions, key=lambda r: r.superpixels)] == [1, 1, 1]


def test_connected_grouping_needs_pairs():
    with pytest.raises(ValueError, match="adjacent pairs"):
        build_regions(table_of(SP, UNCERTAINTY, LABELS), [0, 1], grouping="connected")


def test_confidence_is_one_minus_the_pixel_weighted_mean_uncertainty():
    sp = np.array([[0, 1, 1, 1]])  # sizes 1 and 3, both class 0, adjacent
    table = superpixel_table(sp, np.array([[0.8, 0.2, 0.2, 0.2]]), np.zeros((1, 4), int), 1)
    (region,) = build_regions(table, [0, 1], grouping="connected", pairs=adjacent_pairs(sp))
    # Pixel-weighted: (0.8 + 3 * 0.2) / 4 = 0.35 (the unweighted mean of the two would be 0.5).
    assert region.confidence == pytest.approx(0.65)
    assert region == Region((0, 1), 0, region.confidence, 4)


def test_regions_are_least_confident_first_with_ties_by_first_superpixel():
    table = table_of(SP, [0.5, 0.1, 0.9, 0.5, 0.3, 0.2, 0.4, 0.8, 0.6, 0.7, 0.0, 0.5],
                     np.arange(12) % 3)
    regions = build_regions(table, range(12), grouping="superpixel")
    confidences = [r.confidence for r in regions]
    assert confidences == sorted(confidences)
    assert [r.superpixels[0] for r in regions][:3] == [2, 7, 9]
    tied = [r.superpixels[0] for r in regions if r.confidence == pytest.approx(0.5)]
    assert tied == [0, 3, 11]


def test_confidence_is_clamped_and_empty_or_missing_ids_are_dropped():
    sp = np.array([[0, 0, 2, 2]])  # id 1 has no pixels
    table = superpixel_table(sp, np.array([[1.2, 1.2, -0.1, -0.1]]), np.zeros((1, 4), int), 1)
    regions = build_regions(table, [1, 0, 2], grouping="superpixel")
    assert [(r.superpixels, r.confidence) for r in regions] == [((0,), 0.0), ((2,), 1.0)]
    assert build_regions(table, [], grouping="connected", pairs=adjacent_pairs(sp)) == []
    assert build_regions(table, [1], grouping="superpixel") == []


def test_region_map_indexes_regions_and_marks_the_rest():
    regions = [Region((5, 6), 1, 0.2, 8), Region((0,), 0, 0.4, 4)]
    index = region_map(SP, regions)
    assert index.dtype == np.int32 and index.shape == SP.shape
    np.testing.assert_array_equal(index, np.where(np.isin(SP, [5, 6]), 0,
                                                  np.where(SP == 0, 1, -1)))
    np.testing.assert_array_equal(region_map(SP, []), np.full(SP.shape, -1))


# ---------------------------------------------------------------- smoothing


def test_smoothing_absorbs_an_isolated_fragment():
    labels = np.zeros(12, int)
    labels[5] = 2  # one tile of class 2 in a field of class 0
    table = table_of(SP, UNCERTAINTY, labels)
    smoothed = smooth_labels(table, adjacent_pairs(SP), 1)
    np.testing.assert_array_equal(smoothed.label, np.zeros(12))
    # Uncertainty and sizes do not change, nor does the input.
    np.testing.assert_array_equal(smoothed.uncertainty, table.uncertainty)
    np.testing.assert_array_equal(smoothed.size, table.size)
    assert table.label[5] == 2


def test_smoothing_keeps_areas_held_by_a_majority():
    labels = np.array([1, 1, 1, 1,
                       0, 0, 1, 1,
                       0, 0, 1, 1])  # two blocks: every tile has a majority of its own class
    table = table_of(SP, UNCERTAINTY, labels)
    np.testing.assert_array_equal(smooth_labels(table, adjacent_pairs(SP), 3).label, labels)


def test_no_rounds_or_no_neighbours_change_nothing():
    table = table_of(SP, UNCERTAINTY, LABELS)
    assert smooth_labels(table, adjacent_pairs(SP), 0) is table
    single = superpixel_table(np.zeros((2, 2), int), np.zeros((2, 2)), np.ones((2, 2), int), 2)
    assert smooth_labels(single, adjacent_pairs(np.zeros((2, 2), int)), 2) is single


def test_smoothing_weighs_neighbours_by_their_pixels():
    sp = np.array([[0, 1, 1, 1],
                   [0, 1, 1, 1],
                   [2, 2, 3, 3]])
    # Superpixel 0 (class 1) touches 1 (6 pixels, class 0) and 2 (2 pixels, class 1).
    table = superpixel_table(sp, np.zeros(sp.shape), np.array([1, 0, 1, 1])[sp], 2)
    assert smooth_labels(table, adjacent_pairs(sp), 1).label[0] == 0


def test_a_tie_with_the_own_class_keeps_it_whatever_the_class_order():
    for own, other in ((1, 0), (0, 1)):
        labels = np.full(12, own)
        labels[4:] = other  # tile 0's neighbours: 1 (own class) and 4 (the other), one each
        table = table_of(SP, UNCERTAINTY, labels)
        smoothed = smooth_labels(table, adjacent_pairs(SP), 3)
        np.testing.assert_array_equal(smoothed.label, labels)


def test_class_grouping_makes_one_region_per_predicted_class():
    table = table_of(SP, UNCERTAINTY, LABELS)
    queried = [0, 1, 5, 6, 10, 11]
    regions = build_regions(table, queried, grouping="class")
    assert sorted(r.label for r in regions) == sorted(set(table.label[queried].tolist()))
    assert sorted(i for r in regions for i in r.superpixels) == queried
    for region in regions:
        assert all(table.label[i] == region.label for i in region.superpixels)
    assert [r.confidence for r in regions] == sorted(r.confidence for r in regions)
    with pytest.raises(ValueError, match="grouping must be one of"):
        QueryPolicy(grouping="blobs")  # the grouping is checked where a policy is made


def test_dominant_classes_judge_each_region_by_its_most_labeled_class():
    from dbsal_backend.engine.constants import IGNORE_INDEX
    from dbsal_backend.engine.regions import dominant_classes

    rng = np.random.default_rng(3)
    for _ in range(50):
        index = rng.integers(-1, 6, size=(12, 15))
        labels = rng.integers(0, 4, size=index.shape).astype(np.uint8)
        labels[rng.random(index.shape) < 0.3] = IGNORE_INDEX
        got = dominant_classes(index, labels, 6, 4)
        for k in range(6):  # the rule written out: bincount's argmax, lowest class on a tie
            given = labels[(index == k) & (labels != IGNORE_INDEX)]
            assert got[k] == (np.bincount(given, minlength=4).argmax() if given.size else -1)
