"""Tests for dbsal_backend.labelstudio.annotations."""

import numpy as np
import pytest
from backendproc import brush as brush_result
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.labelstudio.label_config import EXAMPLE_LABEL_CONFIG, parse_label_config
from dbsal_backend.labelstudio.annotations import (
    AnnotationError,
    annotation_to_label_map,
    label_map_to_results,
    select_annotations,
)
from dbsal_backend.labelstudio.rle import mask_to_rle

CONFIG = parse_label_config(EXAMPLE_LABEL_CONFIG)
H, W = 6, 9


def brush(mask, label, **overrides):
    """One brush result of CONFIG (the example config: BrushLabels "tag" on Image "image")."""
    return {"id": "r1", **brush_result(mask, label), **overrides}


def box(r0, r1, c0, c1):
    mask = np.zeros((H, W), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_regions_map_to_classes_and_later_results_win():
    road, sky = box(0, 4, 0, 5), box(2, 6, 3, 9)
    label_map, warnings = annotation_to_label_map(
        [brush(road, "road"), brush(sky, "sky")], CONFIG, H, W, CONFIG.class_index
    )
    expected = np.full((H, W), IGNORE_INDEX, np.uint8)
    expected[road] = 1
    expected[sky] = 4  # painted after road: wins where they overlap
    assert label_map.dtype == np.uint8 and label_map.shape == (H, W)
    np.testing.assert_array_equal(label_map, expected)
    assert warnings == []


def test_custom_class_index_is_used():
    label_map, _ = annotation_to_label_map(
        [brush(box(0, 2, 0, 2), "road")], CONFIG, H, W, {"road": 7}
    )
    assert set(np.unique(label_map)) == {7, IGNORE_INDEX}


def test_other_controls_types_and_images_are_ignored():
    mask = box(0, 3, 0, 3)
    results = [
        brush(mask, "road", from_name="other"),
        brush(mask, "road", to_name="other_image"),
        {"type": "choices", "from_name": "q", "to_name": "image", "value": {"choices": ["ok"]}},
        brush(mask, "road", type="polygonlabels"),
    ]
    label_map, warnings = annotation_to_label_map(results, CONFIG, H, W, CONFIG.class_index)
    assert (label_map == IGNORE_INDEX).all()
    assert warnings == []


def test_unknown_or_several_labels_warn_and_missing_ones_are_skipped():
    mask = box(0, 3, 0, 3)
    no_label, unset, two = brush(mask, "road"), brush(mask, "road"), brush(mask, "road")
    no_label["value"]["brushlabels"] = []  # a region nobody gave a class: no mistake
    del unset["value"]["brushlabels"]
    two["value"]["brushlabels"] = ["road", "sky"]
    results = [brush(mask, "cat"), no_label, unset, two, brush(box(3, 6, 3, 6), "sky")]
    label_map, warnings = annotation_to_label_map(
        results, CONFIG, H, W, {"road": 1, "sky": 4}
    )
    assert len(warnings) == 2
    assert "'cat' is not in the label config" in warnings[0]
    assert "expected one label" in warnings[1]
    assert (label_map[mask] == IGNORE_INDEX).all()
    assert (label_map[box(3, 6, 3, 6)] == 4).all()


def test_label_without_class_index_warns():
    _, warnings = annotation_to_label_map(
        [brush(box(0, 1, 0, 1), "building")], CONFIG, H, W, {"road": 1}
    )
    assert warnings and "no class index" in warnings[0]


def test_size_mismatch_raises():
    result = brush(box(0, 2, 0, 2), "road", original_width=W + 1)
    with pytest.raises(AnnotationError, match=r"10x6 image .* is 9x6"):
        annotation_to_label_map([result], CONFIG, H, W, CONFIG.class_index)


def test_malformed_rle_raises():
    result = brush(box(0, 2, 0, 2), "road")
    result["value"]["rle"] = result["value"]["rle"][:5]
    with pytest.raises(AnnotationError, match="malformed RLE"):
        annotation_to_label_map([result], CONFIG, H, W, CONFIG.class_index)


def test_rle_of_another_size_raises():
    result = brush(np.zeros((3, 3), bool), "road", original_width=W, original_height=H)
    with pytest.raises(AnnotationError, match="malformed RLE"):
        annotation_to_label_map([result], CONFIG, H, W, CONFIG.class_index)


@pytest.mark.parametrize("bad", [None, {"result": []}, [42]])
def test_bad_result_containers_raise(bad):
    with pytest.raises(AnnotationError):
        annotation_to_label_map(bad, CONFIG, H, W, CONFIG.class_index)


def test_missing_rle_raises():
    result = brush(box(0, 1, 0, 1), "road")
    del result["value"]["rle"]
    with pytest.raises(AnnotationError, match="no value.rle"):
        annotation_to_label_map([result], CONFIG, H, W, CONFIG.class_index)


def test_argument_checks():
    with pytest.raises(TypeError, match="LabelConfig"):
        annotation_to_label_map([], EXAMPLE_LABEL_CONFIG, H, W, {})
    with pytest.raises(ValueError, match="height"):
        annotation_to_label_map([], CONFIG, 0, W, {})
    with pytest.raises(ValueError, match=r"\[0, 255\)"):
        annotation_to_label_map([], CONFIG, H, W, {"road": 255})
    with pytest.raises(TypeError, match="must be an int"):
        annotation_to_label_map([], CONFIG, H, W, {"road": 1.0})


def test_empty_annotation_is_all_ignore():
    label_map, warnings = annotation_to_label_map([], CONFIG, H, W, {})
    assert (label_map == IGNORE_INDEX).all() and warnings == []


def annotation(ident, updated=None, created=None, cancelled=False):
    return {"id": ident, "updated_at": updated, "created_at": created,
            "was_cancelled": cancelled, "result": []}


def test_select_newest_non_cancelled():
    chosen = select_annotations({
        1: [annotation(10, "2026-01-01T10:00:00Z"), annotation(11, "2026-01-02T09:00:00.5Z"),
            annotation(12, "2026-01-03T00:00:00Z", cancelled=True)],
        2: [annotation(20, cancelled=True)],
        3: [],
        4: [annotation(40, created="2026-02-01T00:00:00+00:00"),
            annotation(41, updated="2026-01-01T00:00:00Z")],
        5: [annotation(50, "2026-01-01T00:00:00Z"), annotation(51, "2026-01-01T00:00:00Z"),
            "junk", {"was_cancelled": False}],
        6: None,
    })
    assert {task: a.get("id") for task, a in chosen.items()} == {1: 11, 4: 40, 5: 51}


def test_select_without_timestamps_uses_id():
    chosen = select_annotations({7: [annotation(3), annotation(9), annotation(5)]})
    assert chosen[7]["id"] == 9


def test_select_rejects_non_mapping():
    with pytest.raises(TypeError, match="mapping"):
        select_annotations([annotation(1)])


def test_label_map_to_results_round_trips():
    rng = np.random.default_rng(3)
    label_map = rng.integers(0, len(CONFIG.labels), (9, 14)).astype(np.uint8)
    label_map[0, :] = IGNORE_INDEX
    results = label_map_to_results(label_map, CONFIG)
    back, warnings = annotation_to_label_map(results, CONFIG, 9, 14, CONFIG.class_index)
    assert warnings == [] and np.array_equal(back, label_map)
    only = np.zeros((9, 14), bool)
    only[5:, :7] = True
    partial, _ = annotation_to_label_map(label_map_to_results(label_map, CONFIG, only=only),
                                         CONFIG, 9, 14, CONFIG.class_index)
    assert np.array_equal(partial[only], label_map[only])
    assert (partial[~only] == IGNORE_INDEX).all()
    with pytest.raises(ValueError):
        label_map_to_results(label_map[0], CONFIG)


# ---------------------------------------------------------------- properties


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 16), st.integers(1, 16)),
                  elements=st.sampled_from([0, 1, 2, 3, 4, IGNORE_INDEX])))
def test_label_maps_round_trip_through_brush_results(label_map):
    results = label_map_to_results(label_map, CONFIG)
    assert len(results) == len(set(np.unique(label_map).tolist()) - {IGNORE_INDEX})
    back, warnings = annotation_to_label_map(results, CONFIG, *label_map.shape,
                                             CONFIG.class_index)
    assert warnings == []
    np.testing.assert_array_equal(back, label_map)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)


@st.composite
def _brush_results(draw):
    """Brush results aimed at this config, with any value, labels, sizes and RLE."""
    result = {"from_name": CONFIG.brush_name, "to_name": CONFIG.image_name,
              "type": draw(st.sampled_from(["brushlabels", "BrushLabels"]))}
    if draw(st.booleans()):
        result["original_width"] = draw(st.sampled_from([W, W + 1]) | _JSON)
        result["original_height"] = draw(st.sampled_from([H, 0]) | _JSON)
    rle = draw(st.one_of(
        st.builds(lambda m: mask_to_rle(m), hnp.arrays(bool, (H, W))),
        st.lists(st.integers(0, 255), max_size=40),
        st.lists(st.integers(), max_size=10),
        _JSON))
    labels = draw(st.one_of(st.lists(st.sampled_from(CONFIG.labels + ["cat"]), max_size=2),
                            _JSON))
    value = draw(st.one_of(st.just({"format": "rle", "rle": rle, "brushlabels": labels}),
                           st.just({"brushlabels": labels}), _JSON))
    result["value"] = value
    return result


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.lists(_brush_results(), max_size=4), st.lists(_JSON, max_size=3), _JSON))
def test_any_annotation_gives_a_label_map_or_an_annotation_error(results):
    try:
        label_map, warnings = annotation_to_label_map(results, CONFIG, H, W,
                                                      CONFIG.class_index)
    except AnnotationError:
        return
    assert label_map.shape == (H, W) and label_map.dtype == np.uint8
    assert set(np.unique(label_map).tolist()) <= set(range(len(CONFIG.labels))) | {IGNORE_INDEX}
    assert all(isinstance(w, str) for w in warnings)


def test_polygon_results_are_painted_in_order_with_the_brushes():
    from dbsal_backend.labelstudio.label_config import parse_label_config
    from dbsal_backend.labelstudio.polygons import polygon_to_mask

    config = parse_label_config(
        '<View><Image name="img" value="$image"/><BrushLabels name="b" toName="img">'
        '<Label value="x"/><Label value="y"/></BrushLabels><PolygonLabels name="p" '
        'toName="img"><Label value="x"/><Label value="y"/></PolygonLabels></View>')
    square = [[0, 0], [50, 0], [50, 50], [0, 50]]  # the top-left quarter, in percent
    mask = polygon_to_mask(square, 10, 20)
    assert mask[:5, :10].all() and mask.sum() <= 6 * 11  # edges drawn inclusively
    assert not mask[7:].any() and not mask[:, 12:].any()
    results = [
        {"type": "polygonlabels", "from_name": "p", "to_name": "img",
         "original_width": 20, "original_height": 10,
         "value": {"points": square, "closed": True, "polygonlabels": ["y"]}},
        {"type": "polygonlabels", "from_name": "p", "to_name": "img",
         "value": {"points": [[0, 0], [10, 0], [10, 10]], "polygonlabels": ["x"]}},
    ]
    label_map, warnings = annotation_to_label_map(results, config, 10, 20, config.class_index)
    assert not warnings
    assert (label_map[:5, :10] != 255).all() and label_map[0, 0] == 0 and label_map[4, 9] == 1
    assert (label_map[7:] == 255).all()
    bad = [{**results[0], "value": {"points": [[1, 2]], "polygonlabels": ["x"]}}]
    with pytest.raises(AnnotationError, match="malformed polygon"):
        annotation_to_label_map(bad, config, 10, 20, config.class_index)


POLYGON_ONLY = parse_label_config(
    '<View><Header value="Select label and click the image to start"/>'
    '<Image name="image" value="$image" zoom="true"/>'
    '<PolygonLabels name="label" toName="image" strokeWidth="3" opacity="0.9">'
    '<Label value="Airplane" background="red"/><Label value="Car" alias="car" '
    'background="blue"/></PolygonLabels></View>')


def polygon(points, label, **overrides):
    return {"type": "polygonlabels", "from_name": "label", "to_name": "image",
            "original_width": 20, "original_height": 10,
            "value": {"points": points, "closed": True, "polygonlabels": [label]}, **overrides}


def test_polygon_only_projects_train_on_polygons_the_one_on_top_wins():
    left = [[0, 0], [50, 0], [50, 100], [0, 100]]
    middle = [[25, 0], [75, 0], [75, 100], [25, 100]]
    results = [polygon(left, "Airplane"), polygon(middle, "car"),  # alias: Label Studio's word
               brush(np.ones((10, 20), bool), "Airplane", from_name="tag", to_name="image")]
    label_map, warnings = annotation_to_label_map(results, POLYGON_ONLY, 10, 20,
                                                  POLYGON_ONLY.class_index)
    assert warnings == []
    assert (label_map[:, :4] == 0).all()  # only the first polygon
    assert (label_map[:, 6:14] == 1).all()  # the second, drawn on top, wins the overlap
    assert (label_map[:, 16:] == IGNORE_INDEX).all()  # brushes are not this project's tool


def test_label_maps_become_polygons_in_a_polygon_only_project():
    label_map = np.full((10, 20), IGNORE_INDEX, np.uint8)
    label_map[1:9, 2:8] = 0
    label_map[3:6, 4:6] = 1  # inside the first: a hole in class 0's region
    label_map[0:4, 12:18] = 1
    results = label_map_to_results(label_map, POLYGON_ONLY)
    assert {r["type"] for r in results} == {"polygonlabels"}
    assert [r["value"]["polygonlabels"] for r in results] == [["Airplane"], ["Car"], ["Car"]]
    back, warnings = annotation_to_label_map(results, POLYGON_ONLY, 10, 20,
                                             POLYGON_ONLY.class_index)
    assert warnings == [] and (back == label_map).all()
