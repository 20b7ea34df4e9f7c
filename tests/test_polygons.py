"""Tests for dbsal_backend.labelstudio.polygons: masks to Label Studio polygons and back."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from dbsal_backend.labelstudio.polygons import _signed_area, mask_outlines, polygon_to_mask


def paint(polygons, height, width):
    mask = np.zeros((height, width), bool)
    for points in polygons:
        mask |= polygon_to_mask(points, height, width)
    return mask


def test_a_square_round_trips_and_points_are_percent_of_the_image():
    mask = np.zeros((10, 20), bool)
    mask[2:6, 4:10] = True
    (square,) = mask_outlines(mask, 0)
    assert len(square) == 4
    assert min(x for x, _ in square) == pytest.approx(100 * 4.5 / 20)
    assert max(y for _, y in square) == pytest.approx(100 * 5.5 / 10)
    assert (paint([square], 10, 20) == mask).all()


def test_holes_are_skipped_or_slit():
    mask = np.zeros((40, 50), bool)
    mask[5:35, 5:45] = True
    mask[15:25, 20:30] = False  # a hole
    mask[10, 10] = False  # a one-pixel hole
    assert mask_outlines(mask, 0, "skip") is None
    (polygon,) = mask_outlines(mask, 0, "slit")
    assert (paint([polygon], 40, 50) == mask).all()
    with pytest.raises(ValueError, match="holes"):
        mask_outlines(mask, 0, "fill")


def test_a_slit_hole_runs_the_other_way_round_so_nonzero_fill_leaves_it_empty():
    from dbsal_backend.labelstudio.polygons import _slit

    ring = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    for hole in (np.array([[4, 4], [6, 4], [6, 6], [4, 6]], float),
                 np.array([[4, 4], [4, 6], [6, 6], [6, 4]], float)):
        joined = _slit(ring, hole)
        assert len(joined) == len(ring) + len(hole) + 2
        # nonzero winding: the hole's area counts against the ring's
        assert abs(_signed_area(joined)) == pytest.approx(100 - 4)


def test_parts_tiny_parts_and_an_offset_window():
    mask = np.zeros((30, 30), bool)
    mask[1:5, 1:5] = True
    mask[20, 20] = True  # one pixel
    mask[10, 25:27] = True  # two pixels
    parts = mask_outlines(mask, 0)
    assert len(parts) == 3 and all(len(p) >= 3 for p in parts)
    assert paint(parts, 30, 30)[mask].all()
    window = mask_outlines(mask[0:10, 0:10], 0, offset=(0, 0), size=(30, 30))
    assert paint(window, 30, 30)[1:5, 1:5].all()
    shifted = mask_outlines(mask[20:21, 20:21], 0, offset=(20, 20), size=(30, 30))
    assert paint(shifted, 30, 30)[20, 20]
    assert mask_outlines(np.zeros((5, 5), bool), 0) == []


@settings(max_examples=100, deadline=None)
@given(arrays(np.bool_, (12, 16)))
def test_any_mask_slit_and_filled_again_covers_every_pixel_of_it(mask):
    # Noise masks spill over (slits, parts touching at a corner); compact shapes round-trip
    # exactly (the tests above).
    assert paint(mask_outlines(mask, 0, "slit"), 12, 16)[mask].all()
