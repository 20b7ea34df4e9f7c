"""Tests for dbsal_backend.engine.scoring: MC-dropout scores of images at the working resolution."""

import copy
import itertools
import math
import threading

import numpy as np
import pytest
import torch

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.engine.data import fit_side
from dbsal_backend.labelstudio.label_config import LabelConfigError, parse_label_config
from dbsal_backend.engine.networks import UNet
from dbsal_backend.engine.scoring import ScoreMap, Scorer, max_uncertainty
from dbsal_backend.server.settings import Settings
from dbsal_backend.engine.training import Recipe

NO_LABELS = '<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"/></View>'


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = UNet(3, base_channels=4, depth=2)
    with torch.no_grad():
        model.decoder.classifier.weight.mul_(30)
    return model.eval()


def images():
    rng = np.random.default_rng(0)
    sizes = [(24, 32), (24, 32), (40, 20), (24, 32), (7, 5), (40, 20)]
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]


def test_maps_are_at_the_working_resolution_and_in_range(model):
    maps = Scorer(model, 3, mc_samples=3, max_side=16).score(images())
    # fit_side: the longer side shrinks to 16, the image's own size when it already fits
    assert [m.uncertainty.shape for m in maps] == [(12, 16), (12, 16), (16, 8), (12, 16), (7, 5),
                                                   (16, 8)]
    for m in maps:
        assert isinstance(m, ScoreMap)
        assert m.uncertainty.dtype == np.float32 and m.predicted.dtype == np.uint8
        assert m.predicted.shape == m.uncertainty.shape
        assert 0.0 <= m.uncertainty.min() and m.uncertainty.max() <= 1.0
        assert m.predicted.max() < 3
        assert 0.0 <= m.score <= 1.0 and isinstance(m.score, float)
        assert m.score == pytest.approx(m.uncertainty.mean(dtype=np.float64))
        assert m.confidence == pytest.approx(1.0 - m.score)
    assert len({round(m.score, 6) for m in maps}) > 1


@pytest.mark.parametrize("heuristic", ["entropy", "bald", "margin", "authors"])
def test_every_heuristic_is_normalised(model, heuristic):
    for m in Scorer(model, 3, heuristic=heuristic, mc_samples=3, max_side=16).score(images()):
        assert 0.0 <= m.uncertainty.min() and m.uncertainty.max() <= 1.0


def test_same_result_whatever_the_batch_size_and_order(model):
    pool = images()
    reference = Scorer(model, 3, mc_samples=4, max_side=16, batch_size=1, seed=3).score(pool)
    for batch_size in (2, 4, 8):
        scorer = Scorer(model, 3, mc_samples=4, max_side=16, batch_size=batch_size, seed=3)
        for order in (range(len(pool)), range(len(pool) - 1, -1, -1)):
            order = list(order)
            got = scorer.score([pool[i] for i in order])
            for position, i in enumerate(order):
                np.testing.assert_allclose(got[position].uncertainty, reference[i].uncertainty,
                                           atol=1e-5)
                np.testing.assert_array_equal(got[position].predicted, reference[i].predicted)
                assert got[position].score == pytest.approx(reference[i].score, abs=1e-6)


def test_the_seed_sets_the_masks(model):
    pool = images()[:2]
    a = Scorer(model, 3, mc_samples=4, max_side=16, seed=1).score(pool)
    b = Scorer(model, 3, mc_samples=4, max_side=16, seed=1).score(pool)
    c = Scorer(model, 3, mc_samples=4, max_side=16, seed=2).score(pool)
    assert [m.score for m in a] == [m.score for m in b]
    assert [m.score for m in a] != [m.score for m in c]


def test_scoring_leaves_the_model_as_it_was(model):
    model.eval()
    Scorer(model, 3, mc_samples=2, max_side=16).score(images()[:1])
    assert not any(m.training for m in model.modules())
    model.train()
    try:
        Scorer(model, 3, mc_samples=2, max_side=16).score(images()[:1])
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


def test_an_empty_list_scores_nothing(model):
    assert Scorer(model, 3).score([]) == []


def test_the_lock_is_held_while_the_model_runs(model):
    lock = threading.Lock()
    scorer = Scorer(model, 3, mc_samples=1, max_side=16, lock=lock)
    seen = []
    original = scorer.model.decode

    def decode(features):
        seen.append(lock.locked())
        return original(features)

    scorer.model.decode = decode
    scorer.score(images()[:2])
    assert seen and all(seen)


def test_the_scorer_runs_a_copy_taken_when_it_was_made(model):
    pool = images()[:2]
    scorer = Scorer(model, 3, mc_samples=2, max_side=16, seed=1)
    before = [m.score for m in scorer.score(pool)]
    assert scorer.model is not model
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.decoder.classifier.weight.mul_(-1)
    again = Scorer(changed, 3, mc_samples=2, max_side=16, seed=1)
    assert [m.score for m in scorer.score(pool)] == before
    assert [m.score for m in again.score(pool)] != before


def test_class_weights_correct_the_pre_label_not_the_uncertainty(model):
    pool = images()[:3]
    plain = Scorer(model, 3, mc_samples=3, max_side=16, seed=1).score(pool)
    assert any((m.predicted == 2).any() for m in plain)
    # A class trained with a large weight is over-predicted: its probability is divided back.
    weighted = Scorer(model, 3, mc_samples=3, max_side=16, seed=1,
                      class_weights=[1.0, 1.0, 1e6]).score(pool)
    for a, b in zip(plain, weighted):
        np.testing.assert_array_equal(a.uncertainty, b.uncertainty)
        assert a.score == b.score
        assert not (b.predicted == 2).any()
        keep = a.predicted != 2
        np.testing.assert_array_equal(b.predicted[keep], a.predicted[keep])
    # Equal weights change nothing; a class without labels (weight 0) counts as the rarest.
    same = Scorer(model, 3, mc_samples=3, max_side=16, seed=1,
                  class_weights=[2.0, 2.0, 2.0]).score(pool)
    for a, b in zip(plain, same):
        np.testing.assert_array_equal(a.predicted, b.predicted)
    assert any((m.predicted == 0).any() for m in plain)
    unseen = Scorer(model, 3, mc_samples=3, max_side=16, seed=1,
                    class_weights=[0.0, 1.0, 1e6]).score(pool)
    assert all((m.predicted == 1).all() for m in unseen)


def test_prelabels_are_the_mean_of_the_image_and_its_mirror_without_dropout(model):
    pool = images()
    scorer = Scorer(model, 3, mc_samples=3, max_side=16, seed=1)
    labels = scorer.prelabels(pool)
    for image, label, scores in zip(pool, labels, scorer.score(pool)):
        assert label.dtype == np.uint8 and label.shape == scores.predicted.shape
        x = torch.from_numpy(np.stack([fit_side(image, 16)])).permute(0, 3, 1, 2) / 255
        with torch.no_grad():
            plain = torch.softmax(model(x), 1) + torch.softmax(model(x.flip(-1)), 1).flip(-1)
        agree = (plain[0].argmax(0).numpy() == label).mean()
        assert agree >= 0.95  # the scorer's model has its batch norms folded: tiny differences
    # Mirror-equivariant, as the mean of both views is; no dropout: no seed, no randomness.
    mirrored = scorer.prelabels([np.ascontiguousarray(i[:, ::-1]) for i in pool])
    for label, other in zip(labels, mirrored):
        np.testing.assert_array_equal(other, label[:, ::-1])
    again = Scorer(model, 3, mc_samples=5, max_side=16, seed=7).prelabels(pool)
    for a, b in zip(labels, again):
        np.testing.assert_array_equal(a, b)
    assert scorer.prelabels([]) == []


def test_prelabels_are_corrected_for_the_class_weights_and_leave_the_flags(model):
    pool = images()[:3]
    plain = Scorer(model, 3, max_side=16).prelabels(pool)
    assert any((m == 2).any() for m in plain)
    scorer = Scorer(model, 3, max_side=16, class_weights=[1.0, 1.0, 1e6])
    assert not any((m == 2).any() for m in scorer.prelabels(pool))
    scorer.model.train()
    scorer.prelabels(pool)
    assert all(m.training for m in scorer.model.modules())
    scorer.model.eval()
    scorer.prelabels(pool)
    assert not any(m.training for m in scorer.model.modules())


def test_confident_prelabels_keep_the_prelabel_where_its_probability_reaches_the_threshold(model):
    pool = images()
    scorer = Scorer(model, 3, max_side=16, class_weights=[1.0, 2.0, 0.5])
    labels = scorer.prelabels(pool)
    kept = []
    for threshold in (0.4, 0.7, 0.99):
        confident = scorer.confident_prelabels(pool, threshold)
        share = []
        for image, label, sure in zip(pool, labels, confident):
            assert sure.dtype == np.uint8 and sure.shape == label.shape
            mask = sure != IGNORE_INDEX
            np.testing.assert_array_equal(sure[mask], label[mask])  # the pre-label or nothing
            # by hand: the mirrored mean, corrected by 1 / w and normalised, at its maximum
            x = torch.from_numpy(np.stack([fit_side(image, 16)])).permute(0, 3, 1, 2) / 255
            with torch.no_grad():
                p = (torch.softmax(model(x), 1) + torch.softmax(model(x.flip(-1)), 1).flip(-1)) / 2
            p = p * torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1, 1)
            top = (p / p.sum(1, keepdim=True)).max(1).values[0].numpy()
            clear = np.abs(top - threshold) > 0.02  # folded batch norms: tiny differences
            np.testing.assert_array_equal(mask[clear], (top >= threshold)[clear])
            share.append(mask.mean())
        kept.append(np.mean(share))
    assert kept[0] > kept[1] > kept[2]  # a higher threshold keeps fewer pixels
    assert scorer.confident_prelabels([], 0.5) == []


def test_prelabel_confidence_is_the_prelabel_and_its_corrected_probability(model):
    pool = images()
    scorer = Scorer(model, 3, max_side=16, class_weights=[1.0, 2.0, 0.5])
    pairs = list(scorer.prelabel_confidence(pool))
    assert len(pairs) == len(pool)
    for image, label, (predicted, confidence) in zip(pool, scorer.prelabels(pool), pairs):
        np.testing.assert_array_equal(predicted, label)
        assert confidence.dtype == np.float32 and confidence.shape == label.shape
        x = torch.from_numpy(np.stack([fit_side(image, 16)])).permute(0, 3, 1, 2) / 255
        with torch.no_grad():
            p = (torch.softmax(model(x), 1) + torch.softmax(model(x.flip(-1)), 1).flip(-1)) / 2
        p = p * torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1, 1)
        top = (p / p.sum(1, keepdim=True)).max(1).values[0].numpy()
        np.testing.assert_allclose(confidence, top, atol=0.02)  # folded batch norms
        assert (confidence >= 1 / 3 - 1e-6).all() and (confidence <= 1 + 1e-6).all()


@pytest.mark.parametrize("threshold", [0, 0.0, -0.5, 1.5, True, "0.9"])
def test_confident_prelabels_threshold_validation(threshold):
    """The threshold is checked where it enters: the Recipe (DBSAL_SELF_LABEL)."""
    with pytest.raises(ValueError, match="self_label"):
        Recipe(self_label=threshold)


@pytest.mark.parametrize("weights", [[1.0, 1.0], [1.0, 1.0, -1.0], [1.0, float("nan"), 1.0],
                                     [1.0, float("inf"), 1.0]])
def test_class_weights_validation(model, weights):
    with pytest.raises(ValueError, match="class_weights"):
        Scorer(model, 3, class_weights=weights)


def test_max_uncertainty():
    assert max_uncertainty("entropy", 4) == pytest.approx(2.0)
    assert max_uncertainty("bald", 8) == pytest.approx(3.0)
    assert max_uncertainty("authors", 4) == pytest.approx(4.0)
    assert max_uncertainty("margin", 19) == 1.0
    assert max_uncertainty("entropy", 1) == pytest.approx(1.0)  # at least one bit
    assert max_uncertainty("entropy", 5) == pytest.approx(math.log2(5))


def test_validation(model):
    with pytest.raises(ValueError):
        Scorer(model, 3, heuristic="variance")


@pytest.mark.parametrize("name, raw", [("DBSAL_MC_SAMPLES", "0"), ("DBSAL_MAX_SIDE", "0"),
                                       ("DBSAL_SCORE_BATCH_SIZE", "0"),
                                       ("DBSAL_SCORE_BATCH_SIZE", "true"),
                                       ("DBSAL_MC_SAMPLES", "2.5")])
def test_the_scorers_numbers_are_checked_in_the_settings(name, raw):
    """Scorer trusts its counts: they enter as settings, checked there."""
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


def test_a_config_without_labels_gives_no_scorer():
    """The class count enters with the label config, which needs at least one label."""
    with pytest.raises(LabelConfigError, match="no <Label> children"):
        parse_label_config(NO_LABELS)


def _keyed(pool, pulled=None):
    for key, image in enumerate(pool):
        if pulled is not None:
            pulled.append(key)
        yield key, image


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_stream_scored_by_several_workers_gives_the_scores_of_score_in_order(model, workers):
    pool = images() * 3  # mixed sizes, so batches hold images of one size each
    reference = Scorer(model, 3, mc_samples=3, max_side=16, seed=2).score(pool)
    scorer = Scorer(model, 3, mc_samples=3, max_side=16, seed=2, batch_size=2)
    got = list(scorer.score_stream(_keyed(pool), workers=workers))
    assert [key for key, _, _ in got] == list(range(len(pool)))
    assert all(image is pool[key] for key, image, _ in got)
    for (key, _, maps) in got:
        assert maps.score == pytest.approx(reference[key].score, abs=1e-6)
        np.testing.assert_allclose(maps.uncertainty, reference[key].uncertainty, atol=1e-5)
        np.testing.assert_array_equal(maps.predicted, reference[key].predicted)
    assert not any(m.training for m in model.modules())


def test_a_stream_holds_a_bounded_number_of_batches(model):
    pool = images() * 10
    pulled: list[int] = []
    stream = Scorer(model, 3, mc_samples=1, max_side=16, batch_size=2).score_stream(
        _keyed(pool, pulled), workers=2)
    next(stream)
    assert len(pulled) <= (2 * 2 + 1) * 2  # 2 x workers batches in flight, one being cut
    stream.close()  # stopping early drops the rest without error
    assert len(pulled) < len(pool)


def test_an_error_in_a_worker_is_raised_in_order_and_the_scorer_still_works(model):
    pool = images()[:4]

    def broken():
        yield from _keyed(pool[:2])
        yield 2, np.zeros((0, 5, 3), np.uint8)  # no pixels: fit_side refuses it
        yield from ((k + 3, image) for k, image in enumerate(pool[2:]))

    scorer = Scorer(model, 3, mc_samples=2, max_side=16, batch_size=1)
    stream = scorer.score_stream(broken(), workers=2)
    assert [key for key, _, _ in itertools.islice(stream, 2)] == [0, 1]
    with pytest.raises(ValueError):
        next(stream)
    assert len(list(scorer.score_stream(_keyed(pool), workers=2))) == len(pool)


@pytest.mark.parametrize("raw", ["-1", "1.5", "true"])
def test_workers_must_be_a_positive_int(raw):
    """Checked where they enter (DBSAL_SCORE_WORKERS; 0 there means one per torch thread)."""
    with pytest.raises(ValueError, match="DBSAL_SCORE_WORKERS"):
        Settings.from_env({"DBSAL_SCORE_WORKERS": raw})
