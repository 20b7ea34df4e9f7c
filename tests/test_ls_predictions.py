"""Tests for dbsal_backend.ls_predictions."""

import json

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from dbsal_backend.constants import IGNORE_INDEX
from dbsal_backend.label_config import EXAMPLE_LABEL_CONFIG, parse_label_config
from dbsal_backend.ls_annotations import annotation_to_label_map
from dbsal_backend.ls_predictions import dominant_classes, superpixel_prediction

CONFIG = parse_label_config(EXAMPLE_LABEL_CONFIG)  # 5 classes


def grid_superpixels(h=6, w=8, block=2):
    """Superpixels as ``block x block`` tiles, ids row-major."""
    rows, cols = np.indices((h, w))
    return (rows // block) * (w // block) + cols // block


def test_dominant_classes_matches_loop():
    rng = np.random.default_rng(0)
    sp = grid_superpixels()
    predicted = rng.integers(0, 3, size=sp.shape)
    got = dominant_classes(predicted, sp, 3)
    n = sp.max() + 1
    assert got.shape == (n,)
    for i in range(n):
        counts = np.bincount(predicted[sp == i], minlength=3)
        assert got[i] == np.argmax(counts)


def test_dominant_classes_ties_and_empty_ids():
    sp = np.array([[0, 0, 2, 2]])
    predicted = np.array([[2, 1, 3, 3]])
    np.testing.assert_array_equal(dominant_classes(predicted, sp, 4), [1, 0, 3])


@pytest.mark.parametrize(
    "predicted, sp, n, error",
    [
        (np.zeros((2, 2), int), np.zeros((2, 3), int), 2, ValueError),
        (np.full((2, 2), 2), np.zeros((2, 2), int), 2, ValueError),
        (np.zeros((2, 2), float), np.zeros((2, 2), int), 2, TypeError),
        (np.zeros((2, 2), int), -np.ones((2, 2), int), 2, ValueError),
        (np.zeros((2, 2), int), np.zeros((2, 2), int), 0, ValueError),
        (np.zeros(4, int), np.zeros(4, int), 2, ValueError),
    ],
)
def test_dominant_classes_bad_input(predicted, sp, n, error):
    with pytest.raises(error):
        dominant_classes(predicted, sp, n)


def make_prediction(high_ids=(1, 4), task_score=0.75):
    sp = grid_superpixels()
    predicted = np.zeros(sp.shape, np.int64)
    predicted[sp == 1] = 2  # building
    predicted[sp == 4] = 4  # sky
    predicted[0, 2] = 3  # one dissenting pixel inside superpixel 1
    scores = np.linspace(0.1, 2.2, sp.max() + 1)
    return sp, predicted, scores, superpixel_prediction(
        sp, high_ids, predicted, scores, CONFIG, "dbsal", task_score
    )


def test_prediction_structure():
    sp, _, scores, prediction = make_prediction()
    assert prediction["score"] == 0.75 and prediction["model_version"] == "dbsal"
    results = prediction["result"]
    assert [r["id"] for r in results] == ["sp1", "sp4"]
    assert len({r["id"] for r in results}) == len(results)
    for r, sid, label in zip(results, (1, 4), ("building", "sky")):
        assert r["from_name"] == "tag" and r["to_name"] == "image"
        assert r["type"] == "brushlabels" and r["image_rotation"] == 0
        assert (r["original_width"], r["original_height"]) == (8, 6)
        assert r["value"]["format"] == "rle" and r["value"]["brushlabels"] == [label]
        assert r["score"] == pytest.approx(scores[sid])
        # Decoded with the SDK's own decoder: this superpixel, alpha (and RGB) 0/255.
        canvas = decode_rle(bytes(r["value"]["rle"])).reshape(6, 8, 4)
        np.testing.assert_array_equal(canvas[..., 3], np.where(sp == sid, 255, 0))
    json.dumps(prediction)  # plain JSON types only


def test_prediction_round_trips_through_annotation_decoder():
    sp, _, _, prediction = make_prediction(high_ids=np.array([0, 5, 11]))
    label_map, warnings = annotation_to_label_map(
        prediction["result"], CONFIG, 6, 8, CONFIG.class_index
    )
    assert warnings == []
    expected = np.full(sp.shape, IGNORE_INDEX)
    expected[np.isin(sp, [0, 5, 11])] = 0  # background everywhere but sp 1 and 4
    np.testing.assert_array_equal(label_map, expected)


def test_repeated_absent_and_no_ids():
    sp = np.array([[0, 0, 2, 2]])  # id 1 has no pixels
    predicted = np.zeros_like(sp)
    scores = np.array([0.5, 0.9, 0.2])
    prediction = superpixel_prediction(sp, [2, 1, 2], predicted, scores, CONFIG, "v", 0.0)
    assert [r["id"] for r in prediction["result"]] == ["sp2"]
    assert superpixel_prediction(sp, [], predicted, scores, CONFIG, "v", 1)["result"] == []


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"high_ids": np.array([True, False])}, TypeError, "flatnonzero"),
        ({"high_ids": [12]}, ValueError, r"\[0, 12\)"),
        ({"high_ids": [-1]}, ValueError, r"\[0, 12\)"),
        ({"scores": np.ones(3)}, ValueError, "at least 12"),
        ({"scores": np.full(12, np.nan)}, ValueError, "finite"),
        ({"task_score": 1.5}, ValueError, r"\[0, 1\]"),
        ({"task_score": float("nan")}, ValueError, r"\[0, 1\]"),
        ({"task_score": "0.5"}, TypeError, "number"),
        ({"model_version": ""}, ValueError, "model_version"),
        ({"config": EXAMPLE_LABEL_CONFIG}, TypeError, "LabelConfig"),
        ({"predicted": np.full((6, 8), 5)}, ValueError, "n_classes=5"),
    ],
)
def test_prediction_bad_input(kwargs, error, match):
    sp = grid_superpixels()
    args = {"superpixels": sp, "high_ids": [1], "predicted": np.zeros_like(sp),
            "scores": np.ones(12), "config": CONFIG, "model_version": "v", "task_score": 0.5}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        superpixel_prediction(**args)
