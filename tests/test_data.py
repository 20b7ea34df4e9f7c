"""Tests for dbsal_backend.engine.data: reading files, load_split, SegmentationDataset."""

import numpy as np
import pytest
import torch
from PIL import Image

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.engine.data import (
    SegmentationDataset,
    fit_side,
    load_split,
    read_image,
    read_label,
    resize_nearest,
)


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_read_image_applies_exif_orientation(tmp_path):
    stored = _rgb(2, 4)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "a.png", exif=exif)
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.uint8 and image.shape == (4, 2, 3)
    np.testing.assert_array_equal(image, np.rot90(stored, k=-1))


def test_read_image_converts_grey_and_rgba_to_rgb(tmp_path):
    Image.fromarray(np.full((3, 5), 7, np.uint8)).save(tmp_path / "grey.png")
    rgba = np.dstack([_rgb(3, 5), np.full((3, 5), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.full((3, 5, 3), 7))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[..., :3])


def test_read_label_gives_indices_and_rejects_colour_images(tmp_path):
    values = np.array([[0, 1, 2], [11, 255, 3]], np.uint8)
    Image.fromarray(values).save(tmp_path / "l.png")
    palette = Image.fromarray(values, mode="L").convert("P")
    palette.putpalette([(i * 37) % 256 for i in range(768)])
    palette.save(tmp_path / "p.png")
    for name in ("l.png", "p.png"):
        label = read_label(tmp_path / name)
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, values)
    Image.fromarray(_rgb(2, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel"):
        read_label(tmp_path / "rgb.png")


def _write_split(root, split, items):
    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    for stem, image, label in items:
        Image.fromarray(image).save(root / split / "images" / f"{stem}.png")
        if label is not None:
            Image.fromarray(label).save(root / split / "labels" / f"{stem}.png")


def test_load_split_pairs_by_stem_and_remaps_ignore(tmp_path):
    label_b = np.array([[0, 11], [2, 1]], np.uint8)
    label_a = np.array([[3, 3, 11], [255, 0, 1]], np.uint8)
    _write_split(tmp_path, "train", [("b", _rgb(2, 2, 1), label_b), ("a", _rgb(2, 3, 2), label_a)])
    (tmp_path / "train" / "images" / "notes.txt").write_text("not an image")
    images, labels, names = load_split(tmp_path, "train", ignore_value=11)
    assert names == ["a", "b"]
    np.testing.assert_array_equal(images[0], _rgb(2, 3, 2))
    np.testing.assert_array_equal(labels[0], [[3, 3, 255], [255, 0, 1]])
    np.testing.assert_array_equal(labels[1], [[0, 255], [2, 1]])
    assert all(label.dtype == np.uint8 for label in labels)


def test_load_split_scale_resizes_labels_with_nearest(tmp_path):
    label = np.zeros((8, 12), np.uint8)
    label[:, 6:] = 4
    _write_split(tmp_path, "val", [("x", _rgb(8, 12), label)])
    images, labels, _ = load_split(tmp_path, "val", scale=0.5)
    assert images[0].shape == (4, 6, 3) and labels[0].shape == (4, 6)
    expected = np.zeros((4, 6), np.uint8)
    expected[:, 3:] = 4
    np.testing.assert_array_equal(labels[0], expected)


def test_load_split_errors(tmp_path):
    _write_split(tmp_path, "train", [("a", _rgb(2, 2), None)])
    with pytest.raises(FileNotFoundError, match="no label"):
        load_split(tmp_path, "train")
    _write_split(tmp_path, "val", [("a", _rgb(2, 2), np.zeros((2, 3), np.uint8))])
    with pytest.raises(ValueError, match="size mismatch"):
        load_split(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_split(tmp_path, "test")
    with pytest.raises(ValueError, match="scale"):
        load_split(tmp_path, "val", scale=0)


def _pattern(height: int = 6, width: int = 8):
    """An image whose red channel is 60 x its label: 4 vertical stripes, labels 0-3 from left."""
    label = np.repeat((np.arange(width) * 4 // width)[None], height, axis=0).astype(np.uint8)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = label * 60
    return image, label


def test_dataset_returns_float_image_and_long_label():
    image, label = _pattern()
    x, y = SegmentationDataset([image], [label])[0]
    assert x.dtype == torch.float32 and x.shape == (3, 6, 8)
    assert y.dtype == torch.int64 and y.shape == (6, 8)
    assert torch.allclose(x[0] * 255, torch.from_numpy(image[..., 0]).float())
    assert torch.equal(y, torch.from_numpy(label).long())


def test_hflip_keeps_image_and_label_aligned():
    image, label = _pattern()
    ds = SegmentationDataset([image], [label], hflip=True, seed=3)
    flipped = 0
    for epoch in range(12):
        ds.set_epoch(epoch)
        x, y = ds[0]
        assert torch.equal(torch.round(x[0] * 255 / 60).long(), y)
        flipped += int(y[0, 0] == label[0, -1])
    assert 0 < flipped < 12  # both flipped and unflipped items occur


def test_crop_pads_labels_with_ignore_and_images_with_zero():
    image, label = _pattern(6, 8)
    image = image + 1  # no zero pixels inside the image
    x, y = SegmentationDataset([image], [label], crop_size=(10, 12))[0]
    assert x.shape == (3, 10, 12) and y.shape == (10, 12)
    padded = y == IGNORE_INDEX
    assert int(padded.sum()) == 10 * 12 - 6 * 8
    assert torch.all(x[:, padded] == 0)
    assert torch.all(x[0, ~padded] > 0)


def test_scale_and_crop_keep_alignment_and_output_size():
    image, label = _pattern(24, 32)
    ds = SegmentationDataset([image], [label], crop_size=16, scale_range=(0.5, 1.5), hflip=True)
    for epoch in range(8):
        ds.set_epoch(epoch)
        x, y = ds[0]
        assert x.shape == (3, 16, 16) and y.shape == (16, 16)
        valid = y != IGNORE_INDEX
        agree = torch.round(x[0] * 255 / 60).long()[valid] == y[valid]
        assert agree.float().mean() > 0.8  # only interpolated edges between stripes differ
    # Without crop_size the output keeps the image size while the content is rescaled.
    x, y = SegmentationDataset([image], [label], scale_range=(0.5, 0.5))[0]
    assert y.shape == (24, 32) and int((y == IGNORE_INDEX).sum()) == 24 * 32 - 12 * 16


def test_dataset_is_reproducible_per_seed_and_epoch():
    images = [_rgb(20, 20, seed) for seed in range(3)]
    labels = [np.random.default_rng(seed).integers(0, 5, (20, 20)).astype(np.uint8)
              for seed in range(3)]
    make = lambda seed: SegmentationDataset(images, labels, crop_size=12,  # noqa: E731
                                            scale_range=(0.8, 1.2), hflip=True, seed=seed)
    a, b = make(0), make(0)
    assert all(torch.equal(a[i][1], b[i][1]) for i in range(3))
    b.set_epoch(1)
    assert not all(torch.equal(a[i][1], b[i][1]) for i in range(3))
    assert not all(torch.equal(a[i][1], make(1)[i][1]) for i in range(3))


@pytest.mark.parametrize("kwargs,match", [
    ({"crop_size": 0}, "crop_size"),
    ({"crop_size": (4, 4, 4)}, "crop_size"),
    ({"scale_range": (1.2, 0.8)}, "scale_range"),
    ({"scale_range": (0, 1)}, "scale_range"),
])
def test_dataset_rejects_bad_augmentation(kwargs, match):
    image, label = _pattern()
    with pytest.raises(ValueError, match=match):
        SegmentationDataset([image], [label], **kwargs)


def test_dataset_rejects_bad_arrays():
    image, label = _pattern()
    with pytest.raises(ValueError, match="labels"):
        SegmentationDataset([image, image], [label])
    with pytest.raises(ValueError, match="height x width"):
        SegmentationDataset([image], [label[:, :-1]])
    with pytest.raises(ValueError, match="uint8"):
        SegmentationDataset([image.astype(np.float32)], [label])
    with pytest.raises(IndexError):
        SegmentationDataset([image], [label])[1]


# ---------------------------------------------------------------- working resolution


def test_fit_side_shrinks_the_longer_side_with_area_interpolation():
    image = np.kron(np.array([[0, 100], [200, 40]], np.uint8), np.ones((4, 8), np.uint8))
    image = np.repeat(image[:, :, None], 3, axis=2)  # 8 x 16, four flat blocks
    small = fit_side(image, 4)
    assert small.shape == (2, 4, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(small[:, :, 0], [[0, 0, 100, 100], [200, 200, 40, 40]])
    mixed = fit_side(np.array([[0, 255]] * 2, np.uint8), 1)  # area: the mean, not a pick
    assert mixed.shape == (1, 1) and 120 <= int(mixed[0, 0]) <= 135


def test_fit_side_keeps_images_that_fit_and_never_goes_below_one_pixel():
    image = np.zeros((30, 20, 3), np.uint8)
    assert fit_side(image, 30) is image and fit_side(image, 500) is image
    assert fit_side(np.zeros((3, 1000, 3), np.uint8), 20).shape == (1, 20, 3)
    assert fit_side(np.zeros((1000, 3, 3), np.uint8), 20).shape == (20, 1, 3)


def test_resize_nearest_keeps_labels_exact():
    labels = np.array([[0, 1], [2, IGNORE_INDEX]], np.uint8)
    assert resize_nearest(labels, 2, 2) is labels
    big = resize_nearest(labels, 4, 6)
    assert big.shape == (4, 6) and big.dtype == np.uint8
    np.testing.assert_array_equal(big, np.kron(labels, np.ones((2, 3), np.uint8)))
    ids = np.arange(6, dtype=np.int32).reshape(2, 3) * 1000
    small = resize_nearest(np.kron(ids, np.ones((3, 3), np.int32)), 2, 3)
    np.testing.assert_array_equal(small, ids)  # ids are never blended
