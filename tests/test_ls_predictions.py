"""Tests for dbsal_backend.labelstudio.predictions: queries as Label Studio predictions."""

import json

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from dbsal_backend.engine.active import Query
from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.labelstudio.label_config import EXAMPLE_LABEL_CONFIG, parse_label_config
from dbsal_backend.labelstudio.annotations import annotation_to_label_map
from dbsal_backend.labelstudio.predictions import empty_prediction, query_prediction
from dbsal_backend.engine.regions import Region
from dbsal_backend.labelstudio.rle import rle_to_mask

CONFIG = parse_label_config(EXAMPLE_LABEL_CONFIG)  # 5 classes


def grid(h=6, w=8, block=2):
    """Superpixels as ``block x block`` tiles, ids row-major."""
    rows, cols = np.indices((h, w))
    return (rows // block) * -(-w // block) + cols // block


REGIONS = [Region((1,), 2, 0.123456, 4), Region((4, 5), 4, 0.5, 8), Region((11,), 0, 0.9, 4)]


def test_one_brush_result_per_region_in_order():
    sp = grid()
    query = Query(17, 0.3, (6, 8), sp, REGIONS, 12)
    prediction = query_prediction(query, CONFIG, "dbsal-v3")
    assert prediction["model_version"] == "dbsal-v3"
    assert prediction["score"] == pytest.approx(0.7)  # the model's confidence in the image
    results = prediction["result"]
    assert [r["id"] for r in results] == ["r0", "r1", "r2"]
    for result, region in zip(results, REGIONS):
        assert (result["from_name"], result["to_name"]) == (CONFIG.brush_name, CONFIG.image_name)
        assert result["type"] == "brushlabels" and result["image_rotation"] == 0
        assert (result["original_width"], result["original_height"]) == (8, 6)
        assert result["value"]["format"] == "rle"
        assert result["value"]["brushlabels"] == [CONFIG.labels[region.label]]
        assert result["score"] == round(region.confidence, 4)
        mask = np.isin(sp, region.superpixels)
        np.testing.assert_array_equal(rle_to_mask(result["value"]["rle"], 6, 8), mask)
        # Label Studio's own decoder reads the same canvas (alpha 255 where painted).
        canvas = decode_rle(bytes(result["value"]["rle"])).reshape(6, 8, 4)
        np.testing.assert_array_equal(canvas[..., 3], np.where(mask, 255, 0))
    assert [r["value"]["brushlabels"] for r in results] == [["building"], ["sky"],
                                                             ["background"]]
    assert json.loads(json.dumps(prediction)) == prediction  # plain JSON types only


def test_a_smaller_superpixel_map_is_scaled_to_the_image():
    sp = grid()  # a 6 x 8 map of 12 tiles, for an image twice as large
    query = Query("t", 0.25, (12, 16), sp, REGIONS, 12)
    prediction = query_prediction(query, CONFIG, "v")
    for result, region in zip(prediction["result"], REGIONS):
        assert (result["original_width"], result["original_height"]) == (16, 12)
        full = np.kron(np.isin(sp, region.superpixels), np.ones((2, 2), bool))
        np.testing.assert_array_equal(rle_to_mask(result["value"]["rle"], 12, 16), full)


def test_a_non_integer_scale_still_covers_each_region_once():
    sp = grid(6, 8, 2)
    query = Query("t", 0.25, (9, 13), sp, REGIONS, 12)
    masks = [rle_to_mask(r["value"]["rle"], 9, 13) for r in query_prediction(
        query, CONFIG, "v")["result"]]
    assert sum(m.astype(int) for m in masks).max() == 1  # no pixel in two regions
    for mask, region in zip(masks, REGIONS):
        share = np.isin(sp, region.superpixels).mean()
        assert mask.mean() == pytest.approx(share, abs=0.1)


def test_the_prediction_reads_back_as_the_pre_labels():
    sp = grid()
    prediction = query_prediction(Query(1, 0.5, (6, 8), sp, REGIONS, 12), CONFIG, "v")
    labels, warnings = annotation_to_label_map(prediction["result"], CONFIG, 6, 8,
                                               CONFIG.class_index)
    assert warnings == []
    expected = np.full(sp.shape, IGNORE_INDEX)
    for region in REGIONS:
        expected[np.isin(sp, region.superpixels)] = region.label
    np.testing.assert_array_equal(labels, expected)


def test_a_query_without_regions_carries_only_the_task_score():
    prediction = query_prediction(Query(1, 0.8, (6, 8), grid(), [], 12), CONFIG, "v")
    assert prediction == {"result": [], "score": pytest.approx(0.2), "model_version": "v"}


@pytest.mark.parametrize("confidence, expected", [(0.25, 0.25), (1.5, 1.0), (-0.1, 0.0),
                                                  (0, 0.0), (1, 1.0)])
def test_empty_prediction_clamps_the_score(confidence, expected):
    prediction = empty_prediction("dbsal", confidence)
    assert prediction == {"result": [], "score": expected, "model_version": "dbsal"}
    assert type(prediction["score"]) is float


POLYGON_CONFIG = parse_label_config(EXAMPLE_LABEL_CONFIG.replace(
    "</View>", '<PolygonLabels name="poly" toName="image">'
    + "".join(f'<Label value="{c}"/>' for c in CONFIG.labels) + "</PolygonLabels></View>"))


def test_with_polygon_labels_regions_are_polygons_that_cover_them():
    from dbsal_backend.labelstudio.polygons import polygon_to_mask
    from dbsal_backend.engine.regions import region_map

    sp = grid(60, 80, 20)  # 3 x 4 tiles of 20 x 20
    regions = [Region((1,), 2, 0.2, 400), Region((4, 5), 4, 0.5, 800), Region((11,), 0, 0.9, 400)]
    prediction = query_prediction(Query(1, 0.4, (60, 80), sp, regions, 12), POLYGON_CONFIG, "v")
    results = prediction["result"]
    assert [r["type"] for r in results] == ["polygonlabels"] * 3
    assert [r["id"] for r in results] == ["r0", "r1", "r2"]
    index = region_map(sp, regions)
    for k, (result, region) in enumerate(zip(results, regions)):
        assert result["from_name"] == "poly" and result["value"]["closed"] is True
        assert result["value"]["polygonlabels"] == [CONFIG.labels[region.label]]
        assert result["score"] == pytest.approx(region.confidence, abs=1e-4)
        mask = polygon_to_mask(result["value"]["points"], 60, 80)
        truth = index == k
        assert (mask & truth).sum() / (mask | truth).sum() > 0.9


def test_a_region_with_a_hole_stays_a_brush_mask_and_parts_become_polygons():
    sp = grid(60, 60, 20)  # 3 x 3 tiles; the ring around the centre tile has a hole
    ring = Region(tuple(i for i in range(9) if i != 4), 1, 0.3, 3200)
    split = Region((4,), 2, 0.6, 400)
    prediction = query_prediction(Query(1, 0.2, (60, 60), sp, [ring, split], 9), POLYGON_CONFIG,
                                  "v")
    kinds = {r["id"]: r["type"] for r in prediction["result"]}
    assert kinds == {"r0": "brushlabels", "r1": "polygonlabels"}
    two_parts = Region((0, 8), 3, 0.4, 800)  # two corner tiles: one region, two polygons
    parts = query_prediction(Query(1, 0.2, (60, 60), sp, [two_parts], 9), POLYGON_CONFIG, "v")
    assert [r["id"] for r in parts["result"]] == ["r0.0", "r0.1"]


def test_polygons_of_a_smaller_superpixel_map_cover_the_regions_at_the_image_size():
    from dbsal_backend.labelstudio.polygons import polygon_to_mask
    from dbsal_backend.engine.regions import region_map

    sp = grid(60, 80, 20)  # the map of an image four times as large (a very large image)
    regions = [Region((1,), 2, 0.2, 400), Region((4, 5), 4, 0.5, 800)]
    prediction = query_prediction(Query(1, 0.4, (240, 320), sp, regions, 12), POLYGON_CONFIG,
                                  "v")
    index = np.kron(region_map(sp, regions), np.ones((4, 4), np.int32))
    for k, result in enumerate(prediction["result"]):
        assert result["type"] == "polygonlabels"
        assert (result["original_width"], result["original_height"]) == (320, 240)
        mask = polygon_to_mask(result["value"]["points"], 240, 320)
        truth = index == k
        # outlines run through the map's boundary pixel centres: half a map pixel inside
        assert (mask & truth).sum() / (mask | truth).sum() > 0.9
        assert mask[truth].mean() > 0.9 and not mask[index == -1].any()


# Label Studio's "Semantic Segmentation with Polygons" template: PolygonLabels alone.
POLYGON_ONLY = parse_label_config(
    '<View><Header value="Select label and click the image to start"/>'
    '<Image name="image" value="$image" zoom="true"/>'
    '<PolygonLabels name="label" toName="image" strokeWidth="3" pointSize="small" opacity="0.9">'
    + "".join(f'<Label value="{c}" background="red"/>' for c in CONFIG.labels)
    + "</PolygonLabels></View>")


def test_polygon_only_a_region_with_a_hole_is_one_polygon_that_leaves_the_hole_out():
    from dbsal_backend.labelstudio.polygons import polygon_to_mask
    from dbsal_backend.engine.regions import region_map

    sp = grid(60, 60, 20)
    ring = Region(tuple(i for i in range(9) if i != 4), 1, 0.3, 3200)
    split = Region((4,), 2, 0.6, 400)
    two_parts = Region((0, 8), 3, 0.4, 800)
    for regions in ([ring, split], [ring], [two_parts]):
        prediction = query_prediction(Query(1, 0.2, (60, 60), sp, regions, 9), POLYGON_ONLY, "v")
        results = prediction["result"]
        assert {r["type"] for r in results} == {"polygonlabels"}
        assert {r["from_name"] for r in results} == {"label"}
        index = region_map(sp, regions)
        for k in range(len(regions)):
            mine = [r for r in results if r["id"].split(".")[0] == f"r{k}"]
            mask = np.zeros((60, 60), bool)
            for r in mine:
                mask |= polygon_to_mask(r["value"]["points"], 60, 60)
            truth = index == k
            assert (mask & truth).sum() / (mask | truth).sum() > 0.95
            assert not mask[20:40, 20:40][2:-2, 2:-2].any() or regions[k] is not ring
    ring_only = query_prediction(Query(1, 0.2, (60, 60), sp, [ring], 9), POLYGON_ONLY, "v")
    assert [r["id"] for r in ring_only["result"]] == ["r0"]  # one polygon, slit to its hole


def test_polygon_only_predictions_read_back_as_the_regions_labels():
    sp = grid(60, 80, 20)
    regions = [Region((1,), 2, 0.2, 400), Region((4, 5), 4, 0.5, 800)]
    prediction = query_prediction(Query(1, 0.4, (60, 80), sp, regions, 12), POLYGON_ONLY, "v")
    label_map, warnings = annotation_to_label_map(prediction["result"], POLYGON_ONLY, 60, 80,
                                                  POLYGON_ONLY.class_index)
    assert warnings == []
    assert (label_map[0:20, 20:40] == 2).mean() > 0.9
    assert (label_map[20:40, 0:40] == 4).mean() > 0.9
    assert (label_map[40:, :] == IGNORE_INDEX).all()


@pytest.mark.parametrize("config", [POLYGON_ONLY, CONFIG], ids=["polygons", "brush"])
def test_a_region_with_no_class_is_shown_without_a_label_or_score(config):
    """A start's region (label ``n_classes``: asked before any model) carries no label and no
    score; if nobody gives it one, reading the annotation back skips it (nothing is learned)."""
    sp = grid(60, 80, 20)
    n = len(config.labels)
    regions = [Region((1,), n, 0.0, 400), Region((6,), n, 0.0, 400)]
    prediction = query_prediction(Query(1, 1.0, (60, 80), sp, regions, 12), config, "v")
    kind = "polygonlabels" if config is POLYGON_ONLY else "brushlabels"
    assert prediction["score"] == 0.0
    assert [r["type"] for r in prediction["result"]] == [kind, kind]
    for result in prediction["result"]:
        assert result["value"][kind] == [] and "score" not in result
    # as Label Studio stores it when one region got a class and the other did not
    answered = json.loads(json.dumps(prediction["result"]))
    answered[0]["value"][kind] = [config.labels[1]]
    del answered[1]["value"][kind]
    label_map, warnings = annotation_to_label_map(answered, config, 60, 80, config.class_index)
    assert (label_map[0:20, 20:40] == 1).all()
    assert (label_map[label_map != 1] == IGNORE_INDEX).all()
    assert warnings == []  # a region left without a class is no mistake
