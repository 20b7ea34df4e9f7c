"""Tests for dbsal_backend.simulator.annotator: the simulated annotator's answers and click counts."""

import numpy as np
import pytest

from dbsal_backend.simulator.annotator import (Answer, ClickModel, SimulatedAnnotator, cai_clicks,
                                              polygon_clicks)
from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.engine.regions import Region

# Parts of at least 32 pixels of a 24 x 40 image (960 pixels) are drawn.
MODEL = ClickModel(tolerance=2.0, min_part=32 / 960, relabel_clicks=2, label_click=1)


def rectangle(shape, top, left, height, width):
    mask = np.zeros(shape, bool)
    mask[top:top + height, left:left + width] = True
    return mask


def test_default_click_model():
    assert ClickModel() == ClickModel(tolerance=2.0, min_part=0.001, relabel_clicks=2,
                                      label_click=1)


def test_a_rectangle_costs_its_four_corners_and_a_label_click():
    clicks, drawn = polygon_clicks(rectangle((30, 40), 5, 5, 10, 20), MODEL)
    assert clicks == 4 + 1
    np.testing.assert_array_equal(drawn, rectangle((30, 40), 5, 5, 10, 20))
    heavier = ClickModel(label_click=3)
    assert polygon_clicks(rectangle((30, 40), 5, 5, 10, 20), heavier)[0] == 4 + 3


def test_each_part_is_priced_and_small_parts_are_not_drawn():
    mask = rectangle((40, 40), 0, 0, 10, 10) | rectangle((40, 40), 20, 20, 8, 8)
    small = rectangle((40, 40), 35, 35, 3, 3)  # 9 pixels: under 1% of 1600
    model = ClickModel(min_part=0.01)
    clicks, drawn = polygon_clicks(mask | small, model)
    assert clicks == 2 * (4 + 1)
    np.testing.assert_array_equal(drawn, mask)
    assert polygon_clicks(small, model)[0] == 0 and not polygon_clicks(small, model)[1].any()
    # The share is of the image, which may be larger than the mask (a region's window).
    clicks, drawn = polygon_clicks(small, model, image_pixels=900)
    assert clicks == 3 + 1  # a 3x3 square simplifies below 3 vertices: a triangle at least
    np.testing.assert_array_equal(drawn, small)
    assert polygon_clicks(small, model, image_pixels=10_000)[0] == 0
    assert polygon_clicks(np.zeros((5, 5), bool), MODEL)[0] == 0
    assert polygon_clicks(small, ClickModel(min_part=0.0))[0] == 4  # every part is drawn


def test_a_curved_outline_costs_more_than_a_rectangle():
    yy, xx = np.mgrid[:60, :60]
    disc = (yy - 30) ** 2 + (xx - 30) ** 2 <= 20 ** 2
    clicks = polygon_clicks(disc, MODEL)[0]
    assert clicks > 8
    assert polygon_clicks(disc, ClickModel(tolerance=0.5))[0] > clicks  # finer: more vertices


def test_whole_image_costs_the_sum_over_its_classes():
    truth = np.zeros((30, 40), np.uint8)
    truth[5:15, 5:25] = 1
    truth[20:28, 30:38] = 2
    truth[0:3, 0:3] = IGNORE_INDEX
    annotator = SimulatedAnnotator(3, MODEL)
    answer = annotator.whole_image(truth)
    expected = sum(polygon_clicks(truth == c, MODEL)[0] for c in (0, 1, 2))
    assert answer.clicks == expected
    # Classes 1 and 2 are rectangles; the background's outline has the void corner cut out.
    assert polygon_clicks(truth == 1, MODEL)[0] == polygon_clicks(truth == 2, MODEL)[0] == 5
    assert expected > 3 * 5
    np.testing.assert_array_equal(answer.labels, truth)
    assert answer.pixels == 30 * 40 - 9
    assert (answer.regions, answer.corrections) == (0, 0)


# Superpixels (24 x 40): rows 0-19 in three column bands 0 | 1 | 2; rows 20-23: 3 (cols 0-19)
# and 4 (cols 20-39).
SP = np.zeros((24, 40), np.int32)
SP[:20, 10:20] = 1
SP[:20, 20:] = 2
SP[20:, :20] = 3
SP[20:, 20:] = 4

TRUTH = np.zeros((24, 40), np.uint8)
TRUTH[:20, 10:20] = 1  # band 1 is all class 1
TRUTH[2:10, 22:30] = 1  # band 2: a class-1 part of 64 pixels (drawn) ...
TRUTH[15:17, 35:37] = 2  # ... a class-2 part of 4 pixels (too small to draw) ...
TRUTH[0:2, 36:40] = IGNORE_INDEX  # ... and 8 void pixels; the rest is class 0
TRUTH[20:, :20] = IGNORE_INDEX  # superpixel 3 is all void


def review(regions):
    return SimulatedAnnotator(3, MODEL).review(TRUTH, SP, regions)


def test_a_right_pre_label_costs_nothing():
    answer = review([Region((0,), 0, 0.5, 200)])
    assert (answer.clicks, answer.corrections, answer.regions) == (0, 0, 1)
    assert (answer.prelabels_right, answer.prelabels_judged, answer.pixels) == (1, 1, 200)
    np.testing.assert_array_equal(answer.labels, np.where(SP == 0, 0, IGNORE_INDEX))


def test_a_wrong_pre_label_is_relabeled():
    answer = review([Region((1,), 2, 0.5, 200)])
    assert (answer.clicks, answer.corrections) == (MODEL.relabel_clicks, 1)
    assert (answer.prelabels_right, answer.prelabels_judged) == (0, 1)
    np.testing.assert_array_equal(answer.labels, np.where(SP == 1, 1, IGNORE_INDEX))


def test_a_mixed_region_repaints_large_parts_exactly_and_keeps_small_ones():
    answer = review([Region((2,), 0, 0.5, 400)])
    square = np.zeros(SP.shape, bool)
    square[2:10, 22:30] = True
    assert answer.clicks == polygon_clicks(square, MODEL)[0] == 5  # no relabel: 0 was right
    assert (answer.corrections, answer.prelabels_right, answer.prelabels_judged) == (0, 1, 1)
    band = SP == 2
    labels = answer.labels
    np.testing.assert_array_equal(labels[square], 1)  # equal to the truth there
    assert (labels[15:17, 35:37] == 0).all()  # too small to repaint: the region's label
    assert (labels[0:2, 36:40] == IGNORE_INDEX).all()  # void stays unlabeled
    assert answer.pixels == band.sum() - 8
    np.testing.assert_array_equal(labels[~band], IGNORE_INDEX)
    # Everywhere in the band but the small part, the answer is the truth.
    agree = band.copy()
    agree[15:17, 35:37] = False
    np.testing.assert_array_equal(labels[agree], TRUTH[agree])


def test_a_wrong_mixed_region_pays_the_relabel_and_the_repaint():
    answer = review([Region((2,), 1, 0.5, 400)])
    assert answer.clicks == MODEL.relabel_clicks + 5 and answer.corrections == 1


def test_void_regions_are_not_judged_and_cost_nothing():
    answer = review([Region((3,), 1, 0.1, 160)])
    assert (answer.clicks, answer.pixels, answer.corrections) == (0, 0, 0)
    assert (answer.prelabels_right, answer.prelabels_judged, answer.regions) == (0, 0, 1)
    assert (answer.labels == IGNORE_INDEX).all()


def test_many_regions_at_once_add_up():
    regions = [Region((0,), 0, 0.5, 200), Region((1,), 2, 0.4, 200), Region((2,), 0, 0.3, 400),
               Region((3,), 1, 0.1, 160)]
    answer = review(regions)
    assert isinstance(answer, Answer)
    assert answer.regions == 4 and answer.corrections == 1
    assert answer.clicks == MODEL.relabel_clicks + 5
    assert (answer.prelabels_right, answer.prelabels_judged) == (2, 3)
    assert answer.pixels == 200 + 200 + (400 - 8)
    assert answer.labels.dtype == np.uint8
    assert (answer.labels[SP == 4] == IGNORE_INDEX).all()  # not asked: not labeled
    # A region of two superpixels is one review: one judgement, one dominant label.
    merged = review([Region((0, 1), 0, 0.5, 400)])
    assert (merged.prelabels_judged, merged.corrections, merged.clicks) == (1, 0, 5)
    np.testing.assert_array_equal(merged.labels[SP == 1], 1)


def test_dominant_answers_never_repaint():
    annotator = SimulatedAnnotator(3, MODEL)
    for label, clicks in ((0, 0), (1, MODEL.relabel_clicks)):
        answer = annotator.review(TRUTH, SP, [Region((2,), label, 0.5, 400)], repaint=False)
        assert (answer.clicks, answer.corrections, answer.pixels) == (clicks, label, 400 - 8)
        band = (SP == 2) & (TRUTH != IGNORE_INDEX)
        np.testing.assert_array_equal(answer.labels[band], 0)  # the class-1 square too
        np.testing.assert_array_equal(answer.labels[~band], IGNORE_INDEX)


def test_cai_clicks_charge_one_click_per_region_instead_of_the_relabels():
    regions = [Region((0,), 0, 0.5, 200), Region((1,), 2, 0.4, 200), Region((2,), 0, 0.3, 400),
               Region((3,), 1, 0.1, 160)]
    answer = review(regions)  # 1 relabel (2 clicks) and one repainted square (5)
    assert cai_clicks(answer.clicks, answer.regions, answer.corrections, MODEL) == 4 + 5
    assert cai_clicks(30, 0, 0, MODEL) == 30  # a whole image is the same either way


@pytest.mark.parametrize("kwargs", [{"tolerance": -1.0}, {"tolerance": float("nan")},
                                    {"min_part": -0.1}, {"min_part": 1.0},
                                    {"min_part": float("nan")}, {"relabel_clicks": -2},
                                    {"label_click": -1}])
def test_click_model_validation(kwargs):
    with pytest.raises(ValueError):
        ClickModel(**kwargs)
