"""Tests for dbsal_backend.engine.active: the I/O-free active-learning step."""

import itertools

import numpy as np
import pytest
import torch

from dbsal_backend.engine.active import (
    Candidate,
    Query,
    QueryPolicy,
    Ranking,
    StepResult,
    active_step,
    decide,
    fit_budget,
    query_candidates,
)
from dbsal_backend.engine.networks import UNet
from dbsal_backend.engine.regions import Region
from dbsal_backend.engine.scoring import ScoreMap, Scorer


def tiles(image, side=2):
    """Fake superpixels: ``side x side`` tiles, ids row-major."""
    height, width = image.shape[:2]
    rows, cols = np.indices((height, width))
    return ((rows // side) * -(-width // side) + cols // side).astype(np.int32)


def candidate(key, per_tile, classes=None, score=None):
    """An 8 x 8 image whose 16 2x2 tiles have the given uncertainty (and predicted class)."""
    per_tile = np.asarray(per_tile, np.float32).reshape(4, 4)
    classes = np.zeros((4, 4), np.uint8) if classes is None else np.asarray(classes, np.uint8)
    u = np.kron(per_tile, np.ones((2, 2), np.float32))
    predicted = np.kron(classes.reshape(4, 4), np.ones((2, 2), np.uint8))
    score = float(u.mean()) if score is None else score
    return Candidate(key, np.zeros((8, 8, 3), np.uint8), ScoreMap(score, u, predicted))


# ---------------------------------------------------------------- policy


def test_policy_defaults():
    policy = QueryPolicy()
    assert (policy.images, policy.split, policy.scope, policy.static_fraction) == (
        10, "natural_breaks", "image", 0.275)
    assert (policy.grouping, policy.class_balanced, policy.max_regions) == ("connected", False, None)
    assert policy.smoothing == 0 and policy.diversity == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"images": 0}, "images"), ({"images": True}, "images"), ({"images": 2.0}, "images"),
    ({"split": "otsu"}, "split"), ({"scope": "batch"}, "scope"),
    ({"static_fraction": 0}, "static_fraction"), ({"static_fraction": 1.5}, "static_fraction"),
    ({"max_regions": 0}, "max_regions"), ({"max_regions": True}, "max_regions"),
    ({"max_regions": 2.0}, "max_regions"),
    ({"smoothing": -1}, "smoothing"), ({"smoothing": True}, "smoothing"),
    ({"smoothing": 1.0}, "smoothing"),
    ({"diversity": 0}, "diversity"), ({"diversity": True}, "diversity"),
    ({"diversity": 2.0}, "diversity"),
])
def test_policy_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QueryPolicy(**kwargs)


# ---------------------------------------------------------------- ranking


def _scored(key, score):
    return Candidate(key, np.zeros((2, 2, 3), np.uint8), ScoreMap(score, np.zeros((2, 2)),
                                                                 np.zeros((2, 2), np.uint8)))


def test_ranking_keeps_the_k_most_uncertain_with_ties_to_the_smaller_key():
    items = [(7, 0.5), (3, 0.5), (9, 0.9), (1, 0.2), (5, 0.5)]
    for order in itertools.permutations(items):
        ranking = Ranking(3)
        for key, score in order:
            ranking.add(_scored(key, score))
        assert [c.key for c in ranking.top()] == [9, 3, 5], order
        assert ranking.priorities == dict(items)


def test_ranking_with_fewer_than_k_images():
    ranking = Ranking(10)
    ranking.add(_scored("b", 0.1))
    ranking.add(_scored("a", 0.3))
    assert [c.key for c in ranking.top()] == ["a", "b"]
    assert Ranking(2).top() == []


def _scene(key, score, scene):
    """A 4 x 4 candidate whose predicted map is all ``scene`` (its class)."""
    return Candidate(key, np.zeros((4, 4, 3), np.uint8),
                     ScoreMap(score, np.zeros((4, 4)), np.full((4, 4), scene, np.uint8)))


def test_diverse_ranking_takes_one_image_per_predicted_layout():
    # 9 images of 3 scenes; the 3 most uncertain are all of scene 0
    items = [(i, 1 - i / 10, i // 3) for i in range(9)]
    plain, diverse = Ranking(3), Ranking(3, diversity=3, n_classes=3)
    for key, score, scene in items[::-1]:
        plain.add(_scene(key, score, scene))
        diverse.add(_scene(key, score, scene))
    assert [c.key for c in plain.top()] == [0, 1, 2]
    assert [c.key for c in diverse.top()] == [0, 3, 6]
    assert diverse.priorities == plain.priorities and len(diverse.priorities) == 9
    # it keeps k x diversity candidates at most
    small = Ranking(1, diversity=2, n_classes=3)
    for key, score, scene in items:
        small.add(_scene(key, score, scene))
    assert [c.key for c in small.top()] == [0]
    with pytest.raises(ValueError, match="n_classes"):
        Ranking(3, diversity=2)


# ---------------------------------------------------------------- split and regions

HARD = [0.9] * 4 + [0.5] * 12
EASY = [0.2] * 4 + [0.05] * 12


def _ids(query):
    return sorted(i for region in query.regions for i in region.superpixels)


def test_image_scope_splits_every_image_on_its_own():
    queries = query_candidates([candidate("hard", HARD), candidate("easy", EASY)], tiles,
                               QueryPolicy(grouping="superpixel"), n_classes=2)
    assert [q.key for q in queries] == ["hard", "easy"]
    assert _ids(queries[0]) == _ids(queries[1]) == [0, 1, 2, 3]
    hard = queries[0]
    assert hard.size == (8, 8) and hard.table_size == 16 and hard.superpixels.shape == (8, 8)
    assert hard.score == pytest.approx(np.mean(HARD))
    assert hard.n_superpixels == 4 and hard.pixels == 16


def test_step_scope_splits_all_superpixels_once():
    queries = query_candidates([candidate("hard", HARD), candidate("easy", EASY)], tiles,
                               QueryPolicy(grouping="superpixel", scope="step"), n_classes=2)
    # One split over 32 scores: {0.9, 0.5} against {0.2, 0.05}; the easy image gets nothing.
    assert _ids(queries[0]) == list(range(16))
    assert queries[1].regions == [] and queries[1].key == "easy"


def test_static_split_per_image_and_per_step():
    policy = QueryPolicy(grouping="superpixel", split="static", static_fraction=0.25)
    per_image = query_candidates([candidate("hard", HARD), candidate("easy", EASY)], tiles,
                                 policy, n_classes=2)
    assert [len(q.regions) for q in per_image] == [4, 4]
    per_step = query_candidates([candidate("hard", HARD), candidate("easy", EASY)], tiles,
                                QueryPolicy(grouping="superpixel", split="static", static_fraction=0.25,
                                            scope="step"), n_classes=2)
    # 8 of 32: the four 0.9 tiles and the first four 0.5 tiles, all in the hard image.
    assert _ids(per_step[0]) == list(range(8)) and per_step[1].regions == []


@pytest.mark.parametrize("scope", ["image", "step"])
def test_several_workers_give_the_same_queries_in_the_same_order(scope):
    rng = np.random.default_rng(4)
    candidates = [candidate(k, list(rng.random(16)), rng.integers(0, 2, 16)) for k in range(7)]
    policy = QueryPolicy(scope=scope, smoothing=1)
    one = query_candidates(candidates, tiles, policy, n_classes=2)
    many = query_candidates(candidates, tiles, policy, n_classes=2, workers=3)
    assert [q.key for q in many] == list(range(7))
    assert [[(r.superpixels, r.label) for r in q.regions] for q in one] == \
        [[(r.superpixels, r.label) for r in q.regions] for q in many]
    assert query_candidates([], tiles, policy, n_classes=2, workers=3) == []


def test_connected_grouping_gives_one_region_per_connected_same_class_group():
    classes = [0, 1, 1, 1] + [0] * 12
    (query,) = query_candidates([candidate("a", HARD, classes)], tiles, QueryPolicy(),
                                n_classes=2)
    assert sorted((r.superpixels, r.label) for r in query.regions) == [((0,), 0), ((1, 2, 3), 1)]


def test_class_balanced_weights_change_the_choice():
    per_tile = [0.6] * 8 + [0.4] * 8
    classes = [0] * 8 + [1] * 8  # class 1 is less uncertain but rare in the labels
    policy = QueryPolicy(grouping="superpixel", split="static", static_fraction=0.25, class_balanced=True)
    weights = np.array([1.0, 2.0])
    plain = query_candidates([candidate("a", per_tile, classes)], tiles, policy, 2)
    weighted = query_candidates([candidate("a", per_tile, classes)], tiles, policy, 2, weights)
    assert _ids(plain[0]) == [0, 1, 2, 3] and {r.label for r in plain[0].regions} == {0}
    assert _ids(weighted[0]) == [8, 9, 10, 11] and {r.label for r in weighted[0].regions} == {1}
    # Without class_balanced the weights are not used.
    unbalanced = query_candidates([candidate("a", per_tile, classes)], tiles,
                                  QueryPolicy(grouping="superpixel", split="static", static_fraction=0.25),
                                  2, weights)
    assert _ids(unbalanced[0]) == [0, 1, 2, 3]
    # The regions' confidence stays 1 - uncertainty, whatever the weights.
    assert {round(r.confidence, 6) for r in weighted[0].regions} == {0.6}


def test_smoothing_changes_pre_labels_not_what_is_queried():
    classes = [0] * 16
    classes[1] = 1  # a fragment of class 1 inside class 0
    plain = query_candidates([candidate("a", HARD, classes)], tiles,
                             QueryPolicy(grouping="superpixel"), 2)[0]
    smooth = query_candidates([candidate("a", HARD, classes)], tiles,
                              QueryPolicy(grouping="superpixel", smoothing=1), 2)[0]
    assert _ids(plain) == _ids(smooth) == [0, 1, 2, 3]
    assert {r.superpixels: r.label for r in plain.regions}[(1,)] == 1
    assert {r.label for r in smooth.regions} == {0}
    merged = query_candidates([candidate("a", HARD, classes)], tiles, QueryPolicy(smoothing=1),
                              2)[0]
    assert [r.superpixels for r in merged.regions] == [(0, 1, 2, 3)]


def test_pre_labels_come_from_labels_of_and_the_choice_from_the_scores():
    classes = [0] * 16
    seen = []

    def labels_of(images):
        seen.append(len(images))
        return [np.full((8, 8), 1, np.uint8) for _ in images]

    plain = query_candidates([candidate("a", HARD, classes)], tiles,
                             QueryPolicy(grouping="superpixel"), 2)[0]
    given = query_candidates([candidate("a", HARD, classes)], tiles,
                             QueryPolicy(grouping="superpixel"), 2, labels_of=labels_of)[0]
    assert seen == [1]
    assert _ids(given) == _ids(plain) == [0, 1, 2, 3]
    assert {r.label for r in plain.regions} == {0} and {r.label for r in given.regions} == {1}
    assert [r.confidence for r in given.regions] == [r.confidence for r in plain.regions]


def test_max_regions_keeps_the_least_confident():
    per_tile = [0.95, 0.9, 0.85, 0.8] + [0.1] * 12
    (query,) = query_candidates([candidate("a", per_tile)], tiles,
                                QueryPolicy(grouping="superpixel", max_regions=2), 2)
    assert [r.superpixels for r in query.regions] == [(0,), (1,)]
    assert query.table_size == 16


def test_superpixels_smaller_than_the_image():
    (query,) = query_candidates([candidate("a", HARD)], lambda image: tiles(image[::2, ::2], 1),
                                QueryPolicy(grouping="superpixel"), 2)
    assert query.size == (8, 8) and query.superpixels.shape == (4, 4)
    assert _ids(query) == [0, 1, 2, 3]  # the 0.9 tiles (the top rows), at half size
    assert query.pixels == 4


# ---------------------------------------------------------------- budget


def _query(key, *regions):
    """A query whose regions are (confidence, pixels)."""
    return Query(key, 0.5, (4, 4), np.zeros((4, 4), np.int32),
                 [Region((k,), 0, confidence, pixels)
                  for k, (confidence, pixels) in enumerate(regions)], 16)


QUERIES = [_query("a", (0.1, 5), (0.6, 5)), _query("b", (0.3, 20)), _query("c", (0.2, 1), (0.7, 1))]


def _kept(queries):
    return [(q.key, [r.confidence for r in q.regions]) for q in queries]


def test_fit_budget_unlimited_keeps_everything():
    assert _kept(fit_budget(QUERIES, None, "regions")) == _kept(QUERIES)


def test_fit_budget_in_images_keeps_the_first_whole_images():
    assert _kept(fit_budget(QUERIES, 2, "images")) == [("a", [0.1, 0.6]), ("b", [0.3])]
    assert fit_budget(QUERIES, 0, "images") == []


def test_fit_budget_in_images_does_not_spend_images_on_queries_without_regions():
    queries = [QUERIES[0], _query("empty"), QUERIES[1]]
    assert [q.key for q in fit_budget(queries, 2, "images")] == ["a", "b"]


def test_fit_budget_in_regions_keeps_the_least_confident_of_the_step():
    assert _kept(fit_budget(QUERIES, 3, "regions")) == [("a", [0.1]), ("b", [0.3]),
                                                        ("c", [0.2])]
    # Queries left without regions are dropped; images keep their order.
    assert _kept(fit_budget(QUERIES, 2, "regions")) == [("a", [0.1]), ("c", [0.2])]
    assert fit_budget(QUERIES, 0, "regions") == []
    assert _kept(fit_budget(QUERIES, 99, "regions")) == _kept(QUERIES)


def test_fit_budget_in_pixels_stops_at_the_first_region_that_does_not_fit():
    # Least confident first: 0.1 (5 px), 0.2 (1), 0.3 (20), ...
    assert _kept(fit_budget(QUERIES, 10, "pixels")) == [("a", [0.1]), ("c", [0.2])]
    assert _kept(fit_budget(QUERIES, 26, "pixels")) == [("a", [0.1]), ("b", [0.3]),
                                                        ("c", [0.2])]
    assert fit_budget(QUERIES, 4, "pixels") == []


def test_fit_budget_does_not_change_its_input():
    before = _kept(QUERIES)
    fit_budget(QUERIES, 1, "regions")
    assert _kept(QUERIES) == before


# ---------------------------------------------------------------- the whole step


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = UNet(3, base_channels=4, depth=2)
    with torch.no_grad():  # an opinionated model: uncertainty varies across and within images
        model.decoder.classifier.weight.mul_(30)
    return model.eval()


def _pool(n=7):
    rng = np.random.default_rng(0)
    pool = []
    for key in range(n):
        height, width = (16, 16) if key % 2 else (12, 20)
        image = np.empty((height, width, 3), np.uint8)
        image[:] = rng.integers(0, 256, 3)
        image[:, :width // 2] = rng.integers(0, 256, (height, width // 2, 3))
        pool.append((key, image))
    return pool


def _summary(result):
    return ([(q.key, q.size, [(r.superpixels, r.label) for r in q.regions])
             for q in result.queries],
            sorted(result.priorities))


@pytest.mark.parametrize("batch_size, order", [(3, 1), (4, -1), (7, -1)])
def test_step_does_not_depend_on_batch_size_or_pool_order(model, batch_size, order):
    def step(batch_size, pool):
        scorer = Scorer(model, 3, mc_samples=4, max_side=16, batch_size=batch_size, seed=1)
        return active_step(pool, scorer, lambda image: tiles(image, 4), QueryPolicy(images=3))

    reference = step(1, _pool())
    other = step(batch_size, _pool()[::order])
    assert isinstance(other, StepResult)
    assert _summary(other) == _summary(reference)
    for key, score in reference.priorities.items():
        assert other.priorities[key] == pytest.approx(score, abs=1e-6)
    for q, r in zip(other.queries, reference.queries):
        assert q.score == pytest.approx(r.score, abs=1e-6)
        assert [x.confidence for x in q.regions] == pytest.approx(
            [x.confidence for x in r.regions], abs=1e-6)


def test_step_ranks_scores_every_image_and_keeps_full_sizes(model):
    scorer = Scorer(model, 3, mc_samples=4, max_side=8, batch_size=2, seed=1)
    pool = _pool()
    result = active_step(iter(pool), scorer, lambda image: tiles(image, 4), QueryPolicy(images=3))
    assert sorted(result.priorities) == list(range(7))
    assert all(0.0 <= s <= 1.0 for s in result.priorities.values())
    top = sorted(result.priorities, key=lambda k: (-result.priorities[k], k))[:3]
    assert [q.key for q in result.queries] == top
    sizes = dict((key, image.shape[:2]) for key, image in pool)
    for query in result.queries:
        assert query.size == sizes[query.key] == query.superpixels.shape
        assert query.score == result.priorities[query.key]
        assert query.regions and all(0.0 <= r.confidence <= 1.0 for r in query.regions)
    # Another seed draws other dropout masks: other numbers.
    other = active_step(iter(pool), Scorer(model, 3, mc_samples=4, max_side=8, seed=2),
                        lambda image: tiles(image, 4), QueryPolicy(images=3))
    assert other.priorities != result.priorities


def test_step_pre_labels_are_the_scorers_prelabels(model):
    scorer = Scorer(model, 3, mc_samples=4, max_side=32, seed=1)  # no resizing
    result = active_step(_pool(), scorer, lambda image: tiles(image, 4),
                         QueryPolicy(images=3, grouping="superpixel", smoothing=0))
    images = dict(_pool())
    mc = {q.key: s.predicted for q in result.queries
          for s in scorer.score([images[q.key]])}
    for query in result.queries:
        classes = scorer.prelabels([images[query.key]])[0]
        for region in query.regions:
            (sp,) = region.superpixels
            inside = classes[tiles(images[query.key], 4) == sp]
            assert region.label == np.bincount(inside, minlength=3).argmax()
    # not the MC mean's classes (those of the scores), on this model and pool
    assert any((scorer.prelabels([images[k]])[0] != mc[k]).any() for k in mc)


def test_decide_is_the_step_after_ranking():
    candidates = [candidate("hard", HARD), candidate("easy", EASY)]
    priorities = {"hard": 0.6, "easy": 0.1, "other": 0.05}
    result = decide(candidates, priorities, tiles, QueryPolicy(grouping="superpixel"), 2, budget_left=5,
                    budget_unit="regions")
    assert isinstance(result, StepResult) and result.priorities == priorities
    assert result.priorities is not priorities
    assert [(q.key, len(q.regions)) for q in result.queries] == [("hard", 4), ("easy", 1)]
    unlimited = decide(candidates, priorities, tiles, QueryPolicy(grouping="superpixel"), 2)
    assert [len(q.regions) for q in unlimited.queries] == [4, 4]


def test_step_fits_the_budget(model):
    scorer = Scorer(model, 3, mc_samples=2, max_side=16, seed=1)
    free = active_step(_pool(), scorer, lambda image: tiles(image, 4),
                       QueryPolicy(images=3, grouping="superpixel"))
    capped = active_step(_pool(), scorer, lambda image: tiles(image, 4),
                         QueryPolicy(images=3, grouping="superpixel"), budget_left=2,
                         budget_unit="regions")
    assert sum(len(q.regions) for q in capped.queries) == 2
    assert capped.priorities == free.priorities
    least = sorted(r.confidence for q in free.queries for r in q.regions)[:2]
    assert sorted(r.confidence for q in capped.queries for r in q.regions) == least
    assert active_step([], scorer, tiles, QueryPolicy()).queries == []
