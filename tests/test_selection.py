"""Tests for dbsal_backend.engine.selection: ranking, splits and baselines."""

from fractions import Fraction

import jenkspy
import numpy as np
import pytest

from dbsal_backend.engine.active import QueryPolicy
from dbsal_backend.engine.selection import (
    diverse_top,
    farthest_first,
    layout,
    SPLIT_METHODS,
    kmeans_split,
    natural_breaks_split,
    natural_breaks_threshold,
    random_images,
    rank_images,
    split_superpixels,
    static_split,
    within_group_sse,
)


def brute_force_splits(x):
    """Every split between distinct values as (threshold, mask, cost), by direct O(n^2) sums."""
    out = []
    for t in np.unique(x)[:-1]:
        high = x > t
        cost = sum(((g - g.mean()) ** 2).sum() for g in (x[high], x[~high]))
        out.append((t, high, cost))
    return out


def exact_reference_mask(values):
    """Optimal mask for integer scores with exact rational costs; ties -> highest threshold."""
    best = None
    for t in sorted(set(values))[:-1]:
        cost = Fraction(0)
        for group in ([v for v in values if v > t], [v for v in values if v <= t]):
            mean = Fraction(sum(group), len(group))
            cost += sum((v - mean) ** 2 for v in group)
        if best is None or cost <= best[0]:
            best = (cost, t)
    return np.array([v > best[1] for v in values])


def assert_consistent(x, high):
    assert high.dtype == bool and high.shape == x.shape
    if high.any() and (~high).any():
        assert x[high].min() > x[~high].max()


# ---------------------------------------------------------------- natural breaks


def test_natural_breaks_matches_brute_force_on_random_inputs():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(2, 60))
        kind = trial % 3
        if kind == 0:
            x = rng.normal(size=n)
        elif kind == 1:
            x = rng.exponential(size=n) ** 2
        else:
            x = np.concatenate([rng.beta(2, 20, n - n // 4), rng.beta(5, 2, n // 4)])
        high = natural_breaks_split(x)
        assert_consistent(x, high)
        assert high.any() and (~high).any()
        best = min(cost for _, _, cost in brute_force_splits(x))
        assert within_group_sse(x, high) == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_natural_breaks_exact_on_integer_ties():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(2, 30))
        values = rng.integers(0, int(rng.integers(2, 6)), size=n).tolist()
        x = np.array(values, dtype=float)
        high = natural_breaks_split(x)
        assert_consistent(x, high)
        if len(set(values)) < 2:
            assert high.all()
        else:
            np.testing.assert_array_equal(high, exact_reference_mask(values))


def test_natural_breaks_small_n_and_constant():
    assert natural_breaks_split([]).shape == (0,)
    assert natural_breaks_threshold([]) == -np.inf
    np.testing.assert_array_equal(natural_breaks_split([0.4]), [True])
    np.testing.assert_array_equal(natural_breaks_split([2.0, 2.0, 2.0]), [True, True, True])
    assert natural_breaks_threshold([2.0, 2.0]) == -np.inf
    np.testing.assert_array_equal(natural_breaks_split([0.3, 0.1]), [True, False])
    # n = 3, tied costs ({0}|{1,2} and {0,1}|{2} both cost 0.5): the higher threshold wins.
    np.testing.assert_array_equal(natural_breaks_split([2.0, 0.0, 1.0]), [True, False, False])
    assert natural_breaks_threshold([2.0, 0.0, 1.0]) == 1.0
    np.testing.assert_array_equal(natural_breaks_split([0.0, 0.1, 5.0]), [False, False, True])
    np.testing.assert_array_equal(natural_breaks_split([0.0, 4.9, 5.0]), [False, True, True])


def test_natural_breaks_two_values_and_equal_values_together():
    for low_count in range(1, 6):
        for high_count in range(1, 6):
            x = np.array([0.2] * low_count + [0.7] * high_count)
            np.testing.assert_array_equal(natural_breaks_split(x), x == 0.7)
            assert natural_breaks_threshold(x) == 0.2
    # Many copies of a middle value move together.
    x = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0])
    high = natural_breaks_split(x)
    assert len(set(x[high]) & set(x[~high])) == 0


def test_natural_breaks_sorted_and_reverse_sorted():
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, size=200)
    expected = natural_breaks_split(x)
    order = np.argsort(x)
    np.testing.assert_array_equal(natural_breaks_split(x[order]), expected[order])
    np.testing.assert_array_equal(natural_breaks_split(x[order[::-1]]), expected[order[::-1]])
    assert natural_breaks_threshold(x[order]) == natural_breaks_threshold(x)


def test_natural_breaks_large_offset_is_stable():
    rng = np.random.default_rng(3)
    for _ in range(50):
        noise = rng.normal(scale=1e-3, size=int(rng.integers(5, 80)))
        x = 1e6 + noise
        high = natural_breaks_split(x)
        assert_consistent(x, high)
        centred = x - 1e6  # what the split is about, without the offset
        best = min(cost for _, _, cost in brute_force_splits(centred))
        assert within_group_sse(centred, high) == pytest.approx(best, rel=1e-6)
    x = 1e8 + np.array([0.001, 0.002, 0.010, 0.011, 0.0015])
    np.testing.assert_array_equal(natural_breaks_split(x), [False, False, True, True, False])


def test_natural_breaks_matches_jenkspy_without_ties():
    rng = np.random.default_rng(4)
    for _ in range(100):
        n = int(rng.integers(3, 200))
        x = np.concatenate([rng.beta(2, 15, n), rng.beta(6, 2, int(rng.integers(1, n)))])
        rng.shuffle(x)
        assert np.unique(x).size == x.size
        breaks = jenkspy.jenks_breaks(x, n_classes=2)
        np.testing.assert_array_equal(natural_breaks_split(x), x > breaks[1])
        assert natural_breaks_threshold(x) == breaks[1]


def test_splits_reject_bad_scores():
    for split in (natural_breaks_split, kmeans_split, lambda x: static_split(x, 0.5)):
        with pytest.raises(ValueError, match="finite"):
            split([0.1, np.nan, 0.3])
        with pytest.raises(ValueError, match="finite"):
            split([0.1, np.inf])
        with pytest.raises(ValueError, match="1-D"):
            split(np.zeros((2, 2)))
        with pytest.raises(TypeError, match="real numbers"):
            split(["a", "b"])


# ---------------------------------------------------------------- k-means and static


def test_kmeans_agrees_on_well_separated_data():
    rng = np.random.default_rng(5)
    for seed in range(5):
        x = np.concatenate([rng.uniform(0.0, 0.3, 300), rng.uniform(1.5, 2.0, 40)])
        rng.shuffle(x)
        high = kmeans_split(x, seed=seed)
        np.testing.assert_array_equal(high, natural_breaks_split(x))
        np.testing.assert_array_equal(high, x > 1.0)


def test_kmeans_edge_cases():
    assert kmeans_split([]).shape == (0,)
    np.testing.assert_array_equal(kmeans_split([0.5]), [True])
    np.testing.assert_array_equal(kmeans_split([0.5] * 4), [True] * 4)
    np.testing.assert_array_equal(kmeans_split([3.0, 1.0, 3.0, 1.0]), [True, False, True, False])


def test_static_split_counts_and_ties():
    rng = np.random.default_rng(6)
    for n, fraction, count in [(10, 0.3, 3), (40, 0.275, 11), (5, 0.275, 2), (7, 1.0, 7),
                               (1, 0.01, 1), (0, 0.5, 0), (100, 0.07, 7)]:
        x = rng.normal(size=n)
        high = static_split(x, fraction)
        assert high.sum() == count
        if 0 < count < n:
            assert x[high].min() >= x[~high].max()
    np.testing.assert_array_equal(static_split([1.0, 2.0, 2.0, 2.0, 0.0], 0.4),
                                  [False, True, True, False, False])
    # the fraction is checked once, where a policy is made (QueryPolicy, from the settings)
    for bad in (0, 0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"static_fraction must be in \(0, 1\]"):
            QueryPolicy(split="static", static_fraction=bad)
    with pytest.raises(TypeError):
        QueryPolicy(split="static", static_fraction="0.5")


def test_split_superpixels_dispatch():
    x = np.array([0.1, 0.12, 0.11, 0.9, 0.95, 0.2, 0.13, 0.14])
    assert SPLIT_METHODS == ("natural_breaks", "kmeans", "static")
    np.testing.assert_array_equal(split_superpixels(x), natural_breaks_split(x))
    np.testing.assert_array_equal(split_superpixels(x, "kmeans", seed=3), kmeans_split(x, seed=3))
    np.testing.assert_array_equal(split_superpixels(x, "static", fraction=0.5),
                                  static_split(x, 0.5))
    assert split_superpixels(x, "static").sum() == 3  # default fraction 0.275 of 8
    with pytest.raises(ValueError, match="split must be one of"):
        QueryPolicy(split="otsu")  # the method is checked where a policy is made


# ---------------------------------------------------------------- ranking


def test_rank_images_dict_and_array():
    scores = {"c": 0.5, "a": 0.9, "b": 0.5, "d": 0.1}
    assert rank_images(scores, 3) == ["a", "b", "c"]
    assert rank_images(scores, 10) == ["a", "b", "c", "d"]
    assert rank_images(scores, 2, exclude={"a"}) == ["b", "c"]
    assert rank_images({12: 0.3, 7: 0.3, 9: 0.8}, 3) == [9, 7, 12]
    assert rank_images(np.array([0.2, 0.7, 0.2, 0.9]), 3) == [3, 1, 0]
    assert rank_images([0.2, 0.7, 0.2, 0.9], 3, exclude=[1]) == [3, 0, 2]
    assert rank_images({}, 3) == [] and rank_images([0.1], 0) == []
    with pytest.raises(ValueError, match="images must be an int >= 1"):
        QueryPolicy(images=-1)  # how many images a step ranks: checked where a policy is made
    with pytest.raises(ValueError, match="finite"):
        rank_images({"a": float("nan")}, 1)
    with pytest.raises(TypeError, match="mutually comparable"):
        rank_images({"a": 1.0, 2: 1.0}, 2)


def test_layout_is_the_class_share_per_grid_cell():
    predicted = np.zeros((8, 6), np.uint8)
    predicted[4:, :] = 1      # bottom half: class 1
    predicted[0, 0] = 255     # an unknown value counts for no class
    v = layout(predicted, 2, grid=2).reshape(2, 2, 2)
    assert v.dtype == np.float32
    np.testing.assert_allclose(v[0, 0], [11 / 12, 0])
    np.testing.assert_allclose(v[0, 1], [1, 0])
    np.testing.assert_allclose(v[1], [[0, 1], [0, 1]])
    # uneven sizes: cells differ by at most a row or column, shares still sum to 1
    assert np.allclose(layout(np.ones((7, 5), np.uint8), 3, grid=4).reshape(16, 3).sum(1), 1)
    for bad in (np.zeros(8), np.zeros((2, 8))):
        with pytest.raises(ValueError, match="2-D class map"):
            layout(bad, 2, grid=4)
    with pytest.raises(TypeError, match="integer"):
        layout(predicted, 2.0)  # numpy's own refusal; the label config gives the class count


def test_diverse_top_takes_the_most_uncertain_of_each_scene():
    # 30 images of 3 scenes (10 near-identical frames each); scene 0 is the most uncertain
    scores = {i: 1 - i / 100 for i in range(30)}
    features = {i: np.array([i // 10, 0.01 * (i % 10)]) for i in range(30)}
    assert rank_images(scores, 3) == [0, 1, 2]
    assert diverse_top(scores, features, 3, 30) == [0, 10, 20]
    # only the 12 most uncertain are clustered: scene 2 is out, scene 0 splits in its halves
    assert diverse_top(scores, features, 3, 12) == [0, 5, 10]
    # candidates <= k, or identical features: the plain ranking
    assert diverse_top(scores, features, 3, 3) == [0, 1, 2]
    assert diverse_top(scores, {i: np.zeros(4) for i in range(30)}, 3, 30) == [0, 1, 2]
    # two scenes for three picks: the third is the most uncertain image left
    two = {i: np.array([float(i >= 15)]) for i in range(30)}
    assert diverse_top(scores, two, 3, 30) == [0, 1, 15]
    assert diverse_top(scores, features, 5, 100) == diverse_top(scores, features, 5, 100)
    assert diverse_top({}, {}, 3, 9) == []


def test_diverse_top_validation():
    scores = {"a": 0.9, "b": 0.5, "c": 0.1}
    with pytest.raises(ValueError, match="no features for 1 candidate"):
        diverse_top(scores, {"a": [0.0], "b": [1.0]}, 1, 3)
    with pytest.raises(ValueError, match="finite"):
        diverse_top(scores, {"a": [0.0], "b": [1.0], "c": [np.nan]}, 1, 3)
    with pytest.raises(ValueError, match="diversity must be an int >= 1"):
        QueryPolicy(diversity=0)  # the candidates (images x diversity): checked in the policy
    with pytest.raises(ValueError, match="iterations"):
        diverse_top(scores, {}, 1, 3, iterations=0)


def test_farthest_first_takes_points_far_apart_then_stops_at_copies():
    # two tight clusters and one outlier: from point 0, the outlier, then the other cluster
    # (its point farther from those taken)
    x = [[0, 0], [0.1, 0], [5, 5], [5.1, 5], [20, 0]]
    assert farthest_first(x, 3) == [0, 4, 3]
    assert farthest_first(x, 3, first=2) == [2, 4, 0]
    assert farthest_first(x, 1) == [0]
    assert farthest_first(x, 9) == [0, 4, 3, 1, 2]  # never more than the points
    assert farthest_first([[1, 1]] * 4 + [[2, 2]], 5) == [0, 4]  # the rest are copies
    assert farthest_first([[0], [3], [3]], 3) == [0, 1]  # ties: the earlier row
    for bad, match in (([[0], [np.inf]], "finite"), ([], "non-empty"), ([1, 2], "2-d")):
        with pytest.raises(ValueError, match=match):
            farthest_first(bad, 1)
    with pytest.raises(ValueError, match="first"):
        farthest_first(x, 2, first=5)


def test_random_images_distinct_uniform_and_seeded():
    candidates = ["t1", "t2", "t3", "t4", "t5"]
    rng = np.random.default_rng(8)
    counts = dict.fromkeys(candidates, 0)
    for _ in range(3000):
        picked = random_images(candidates, 2, rng)
        assert len(picked) == 2 and len(set(picked)) == 2
        for key in picked:
            counts[key] += 1
    assert all(abs(c - 1200) < 150 for c in counts.values())  # 3000 * 2/5 each
    assert (random_images(candidates, 3, np.random.default_rng(1))
            == random_images(candidates, 3, np.random.default_rng(1)))
    assert sorted(random_images(candidates, 9, rng)) == candidates
    with pytest.raises(TypeError, match="Generator"):
        random_images(candidates, 1, 0)
    with pytest.raises(ValueError, match="distinct"):
        random_images(["a", "a"], 1, rng)
