"""Tests for dbsal_backend.engine.superpixels (OpenCV SLIC and the on-disk cache)."""

import os
import threading

import cv2
import numpy as np
import pytest

from dbsal_backend.engine.superpixels import (
    MSLIC_MIN_SIDE,
    SlicParams,
    SuperpixelCache,
    _relabel,
    mean_colours,
    slic,
)


def textured(height=60, width=80, seed=0):
    """A smooth random colour image (blurred noise), uint8 RGB."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(small, (width, height))[:height, :width])


def assert_contiguous(labels, shape):
    assert labels.dtype == np.int32
    assert labels.shape == shape
    assert labels.min() == 0
    assert np.all(np.bincount(labels.ravel()) > 0)


def test_ximgproc_available():
    assert hasattr(cv2, "ximgproc")
    assert hasattr(cv2.ximgproc, "createSuperpixelSLIC")


@pytest.mark.parametrize("algorithm", ["SLIC", "SLICO", "MSLIC"])
def test_slic_ids_dtype_shape(algorithm):
    image = textured(64, 80)
    labels = slic(image, SlicParams(algorithm=algorithm, n_segments=40))
    assert_contiguous(labels, (64, 80))
    assert labels.max() >= 5


def test_relabel_removes_gaps_and_keeps_order():
    labels = np.array([[7, 7, 2], [9, 2, 7]], dtype=np.int32)
    out = _relabel(labels)
    np.testing.assert_array_equal(out, [[1, 1, 0], [2, 0, 1]])
    assert out.dtype == np.int32


@pytest.mark.parametrize("n_segments", [30, 120])
def test_n_segments_roughly_honoured(n_segments):
    labels = slic(textured(120, 160, seed=1), SlicParams(n_segments=n_segments))
    count = labels.max() + 1
    assert n_segments / 2 <= count <= n_segments * 2


def test_region_size_overrides_n_segments():
    image = textured(120, 160, seed=2)
    fine = slic(image, SlicParams(n_segments=5, region_size=10))
    coarse = slic(image, SlicParams(n_segments=500, region_size=40))
    assert fine.max() + 1 > 4 * (coarse.max() + 1)


@pytest.mark.parametrize("algorithm", ["SLIC", "SLICO"])
def test_boundary_adherence(algorithm):
    image = np.zeros((60, 90, 3), dtype=np.uint8)
    image[:, :37] = (200, 30, 30)
    image[:, 37:] = (20, 40, 220)
    labels = slic(image, SlicParams(algorithm=algorithm, region_size=12))
    left = set(np.unique(labels[:, :37]).tolist())
    right = set(np.unique(labels[:, 37:]).tolist())
    assert left and right
    assert not left & right


def test_grayscale_is_stacked():
    gray = textured(48, 64)[..., 0].copy()
    params = SlicParams(n_segments=20)
    np.testing.assert_array_equal(slic(gray, params), slic(np.stack([gray] * 3, -1), params))


def test_non_contiguous_input_accepted():
    image = textured(48, 64)
    flipped = image[:, ::-1]
    labels = slic(flipped, SlicParams(n_segments=20))
    assert_contiguous(labels, (48, 64))


def test_tiny_image_and_huge_region_do_not_crash():
    image = textured(5, 7)
    for algorithm in ("SLIC", "SLICO"):
        labels = slic(image, SlicParams(algorithm=algorithm, n_segments=1))
        assert_contiguous(labels, (5, 7))
    labels = slic(textured(40, 50), SlicParams(algorithm="MSLIC", region_size=200))
    assert_contiguous(labels, (40, 50))


def test_connectivity_can_be_disabled():
    image = textured(48, 64, seed=3)
    labels = slic(image, SlicParams(n_segments=30, min_element_size=0))
    assert_contiguous(labels, (48, 64))


def test_region_size_for():
    assert SlicParams(n_segments=300).region_size_for(360, 480) == 24
    assert SlicParams(n_segments=10**6).region_size_for(100, 100) == 2
    assert SlicParams(region_size=50).region_size_for(20, 100) == 20
    assert SlicParams(algorithm="MSLIC", region_size=50).region_size_for(60, 100) == 20


@pytest.mark.parametrize(
    "image, error",
    [
        (np.zeros((10, 10, 3), dtype=np.float32), ValueError),
        (np.zeros((10, 10, 4), dtype=np.uint8), ValueError),
        (np.zeros(10, dtype=np.uint8), ValueError),
        (np.zeros((1, 10, 3), dtype=np.uint8), ValueError),
        ([[0, 1], [2, 3]], TypeError),
    ],
)
def test_bad_images_raise(image, error):
    with pytest.raises(error):
        slic(image)


def test_mslic_small_image_refused():
    with pytest.raises(ValueError, match="MSLIC"):
        slic(textured(MSLIC_MIN_SIDE - 1, 60), SlicParams(algorithm="MSLIC"))


def test_bad_params_type_raises():
    with pytest.raises(TypeError):
        slic(textured(), params={"algorithm": "SLICO"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithm": "slico"},
        {"algorithm": "SEEDS"},
        {"n_segments": 0},
        {"n_segments": 2.5},
        {"n_segments": None},
        {"region_size": 1},
        {"region_size": True},
        {"ruler": 0.0},
        {"ruler": float("nan")},
        {"ruler": "10"},
        {"iterations": 0},
        {"min_element_size": -1},
        {"min_element_size": 101},
        {"max_pixels": 3},
        {"max_pixels": 1000.0},
        {"max_pixels": True},
    ],
)
def test_bad_params_raise(kwargs):
    with pytest.raises(ValueError):
        SlicParams(**kwargs)


def test_key_is_stable_and_distinct():
    assert SlicParams().key() == SlicParams().key()
    variants = [
        SlicParams(),
        SlicParams(algorithm="SLIC"),
        SlicParams(n_segments=301),
        SlicParams(region_size=10),
        SlicParams(ruler=10.5),
        SlicParams(iterations=9),
        SlicParams(min_element_size=0),
        SlicParams(max_pixels=10_000),
    ]
    assert len({p.key() for p in variants}) == len(variants)


def test_cache_second_call_is_a_hit(tmp_path):
    image = textured(48, 64)
    cache = SuperpixelCache(tmp_path, SlicParams(n_segments=20), memory_items=0)
    first = cache.get(image)
    assert (cache.hits, cache.misses) == (0, 1)
    assert cache.path(image).exists()
    second = cache.get(image)
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, slic(image, SlicParams(n_segments=20)))
    assert second.dtype == np.int32
    assert [p.name for p in tmp_path.iterdir()] == [cache.path(image).name]


def test_cache_survives_a_new_instance_and_memory_copies(tmp_path):
    image = textured(48, 64)
    params = SlicParams(n_segments=20)
    expected = SuperpixelCache(tmp_path, params).get(image)
    cache = SuperpixelCache(tmp_path, params, memory_items=2)
    labels = cache.get(image)
    assert (cache.hits, cache.misses) == (1, 0)
    labels[:] = -1  # the caller's copy, not the cached one
    np.testing.assert_array_equal(cache.get(image), expected)
    assert (cache.hits, cache.misses) == (2, 0)


def test_cache_different_params_different_file(tmp_path):
    image = textured(48, 64)
    a = SuperpixelCache(tmp_path, SlicParams(n_segments=20))
    b = SuperpixelCache(tmp_path, SlicParams(n_segments=60))
    assert a.path(image) != b.path(image)
    a.get(image)
    b.get(image)
    assert (b.hits, b.misses) == (0, 1)
    assert len(list(tmp_path.iterdir())) == 2


def test_cache_key_depends_on_content_and_shape(tmp_path):
    cache = SuperpixelCache(tmp_path)
    image = textured(48, 64)
    other = image.copy()
    other[0, 0, 0] ^= 1
    assert cache.key(image) != cache.key(other)
    assert cache.key(image) != cache.key(image.reshape(64, 48, 3))


@pytest.mark.parametrize("content", [b"not a zip file", b""])
def test_cache_corrupt_file_is_recomputed(tmp_path, content):
    image = textured(48, 64)
    cache = SuperpixelCache(tmp_path, SlicParams(n_segments=20), memory_items=0)
    expected = cache.get(image)
    cache.path(image).write_bytes(content)
    np.testing.assert_array_equal(cache.get(image), expected)
    assert (cache.hits, cache.misses) == (0, 2)
    np.testing.assert_array_equal(cache.get(image), expected)  # file was rewritten
    assert cache.hits == 1


def test_cache_inconsistent_file_is_recomputed(tmp_path):
    image = textured(48, 64)
    cache = SuperpixelCache(tmp_path, SlicParams(n_segments=20), memory_items=0)
    expected = cache.get(image)
    with open(cache.path(image), "wb") as handle:
        np.savez_compressed(handle, labels=np.zeros((3, 3), dtype=np.int32))
    np.testing.assert_array_equal(cache.get(image), expected)
    assert cache.misses == 2


def test_cache_threads(tmp_path):
    images = [textured(40, 48, seed=s) for s in range(3)]
    cache = SuperpixelCache(tmp_path, SlicParams(n_segments=15), memory_items=1)
    results = {}

    def work(k):
        results[k] = cache.get(images[k % 3])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.hits + cache.misses == 9
    for k, labels in results.items():
        np.testing.assert_array_equal(labels, slic(images[k % 3], cache.params))
    assert sorted(os.listdir(tmp_path)) == sorted(cache.path(i).name for i in images)


def test_cache_bad_arguments(tmp_path):
    with pytest.raises(TypeError):
        SuperpixelCache(tmp_path, params="SLICO")
    with pytest.raises(ValueError):
        SuperpixelCache(tmp_path, memory_items=-1)
    with pytest.raises(ValueError):
        SuperpixelCache(tmp_path).get(np.zeros((8, 8), dtype=np.int64))


# ---------------------------------------------------------------- large images


def test_working_size_keeps_small_images_and_shrinks_large_ones():
    params = SlicParams(max_pixels=1200)
    assert params.working_size(30, 40) == (30, 40)  # exactly the limit
    height, width = params.working_size(60, 80)
    assert (height, width) == (30, 40)
    assert params.working_size(1, 10**6)[0] == 2  # never below 2 pixels a side
    assert SlicParams().max_pixels == 2048 * 2048


def test_an_image_above_max_pixels_is_segmented_at_the_working_size():
    image = textured(60, 80)
    params = SlicParams(n_segments=20, max_pixels=1200)
    labels = slic(image, params)
    assert_contiguous(labels, (30, 40))
    assert 5 <= labels.max() + 1 <= 60
    # The same as segmenting the shrunk image yourself.
    small = cv2.resize(image, (40, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(labels, slic(small, SlicParams(n_segments=20)))
    assert_contiguous(slic(image, SlicParams(n_segments=20, max_pixels=60 * 80)), (60, 80))


def test_the_cache_keys_and_checks_the_working_size(tmp_path):
    image = textured(60, 80)
    small = SuperpixelCache(tmp_path, SlicParams(n_segments=20, max_pixels=1200), memory_items=0)
    full = SuperpixelCache(tmp_path, SlicParams(n_segments=20), memory_items=0)
    assert small.path(image) != full.path(image)
    assert small.get(image).shape == (30, 40) and full.get(image).shape == (60, 80)
    assert small.get(image).shape == (30, 40)
    assert (small.hits, small.misses) == (1, 1)
    # A file of the wrong size under this key is recomputed.
    with open(small.path(image), "wb") as handle:
        np.savez_compressed(handle, labels=np.zeros((60, 80), dtype=np.int32))
    assert small.get(image).shape == (30, 40) and small.misses == 2


# ---------------------------------------------------------------- an unwritable cache


def test_an_unwritable_cache_folder_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    cache = SuperpixelCache(blocker / "cache", SlicParams(n_segments=20), memory_items=0)
    assert cache.problem and "not writable" in cache.problem and "memory" in cache.problem
    assert cache.memory_items >= 1
    image = textured(48, 64)
    first = cache.get(image)
    np.testing.assert_array_equal(first, slic(image, SlicParams(n_segments=20)))
    np.testing.assert_array_equal(cache.get(image), first)
    assert (cache.hits, cache.misses) == (1, 1)  # the second call came from memory


def test_a_cache_folder_that_breaks_later_falls_back_to_memory(tmp_path):
    root = tmp_path / "cache"
    cache = SuperpixelCache(root, SlicParams(n_segments=20), memory_items=0)
    assert cache.problem is None
    root.rmdir()
    root.write_bytes(b"")  # the folder is gone: writes fail from now on
    image = textured(48, 64)
    labels = cache.get(image)
    assert cache.problem and "memory" in cache.problem
    np.testing.assert_array_equal(cache.get(image), labels)
    assert cache.hits == 1


def test_mean_colours_are_each_superpixels_mean_cielab():
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, 15:] = (200, 30, 40)  # a red right half
    image[0, 0] = (255, 255, 255)  # one white pixel in the black half
    superpixels = np.zeros((20, 30), np.int32)
    superpixels[:, 15:] = 1
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(float)
    colours = mean_colours(image, superpixels)
    assert colours.shape == (2, 3)
    np.testing.assert_allclose(colours[0], lab[:, :15].reshape(-1, 3).mean(0))
    np.testing.assert_allclose(colours[1], lab[0, 20])
    # superpixels at a smaller working size: the image is shrunk to them first
    np.testing.assert_allclose(mean_colours(np.repeat(np.repeat(image, 2, 0), 2, 1),
                                            superpixels)[1], lab[0, 20], atol=1)
    with pytest.raises(ValueError, match="uint8"):
        mean_colours(image.astype(float), superpixels)
