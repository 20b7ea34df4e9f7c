"""Tests for dbsal_backend.labelstudio.rle, checked against label_studio_sdk.converter.brush."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle

from dbsal_backend.labelstudio.rle import mask_to_rle, regions_to_rle, rle_to_mask

SIZES = [(1, 1), (1, 9), (7, 13), (16, 16), (37, 61)]


def canvas_of(mask):
    """The RGBA canvas Label Studio expects: 255 on all channels where the mask is set."""
    return np.repeat(mask.ravel().astype(np.uint8) * 255, 4)


def random_masks(height, width, seed=0):
    rng = np.random.default_rng(seed)
    empty = np.zeros((height, width), dtype=bool)
    first, last = empty.copy(), empty.copy()
    first[0, 0] = True
    last[-1, -1] = True
    yield empty
    yield ~empty
    yield first
    yield last
    for density in (0.02, 0.5, 0.97):
        yield rng.random((height, width)) < density
    blob = empty.copy()
    blob[height // 3 : height // 3 + 3, width // 4 :] = True
    yield blob


def reference_encode(values, word, sizes, rng):
    """An independent thi.ng rle-pack encoder with random block choices (bit strings)."""
    bits = [f"{len(values):032b}", f"{word - 1:05b}"] + [f"{s - 1:04b}" for s in sizes]
    longest = 2 ** max(sizes)
    i = 0
    while i < len(values):
        length = int(rng.integers(1, min(longest, len(values) - i) + 1))
        chunk = values[i : i + length]
        index = next(k for k, s in enumerate(sizes) if length <= 2**s)
        field = f"{index:02b}" + f"{length - 1:0{sizes[index]}b}"
        if np.all(chunk == chunk[0]) and rng.random() < 0.7:
            bits.append("1" + field + f"{chunk[0]:0{word}b}")
        else:
            bits.append("0" + field + "".join(f"{v:0{word}b}" for v in chunk))
        i += length
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[k : k + 8], 2) for k in range(0, len(stream), 8)]


@pytest.mark.parametrize("height, width", SIZES)
def test_round_trip(height, width):
    for mask in random_masks(height, width):
        rle = mask_to_rle(mask)
        assert all(isinstance(b, int) and 0 <= b <= 255 for b in rle)
        np.testing.assert_array_equal(rle_to_mask(rle, height, width), mask)


@pytest.mark.parametrize("height, width", SIZES)
def test_sdk_decodes_ours(height, width):
    for mask in random_masks(height, width, seed=1):
        np.testing.assert_array_equal(decode_rle(mask_to_rle(mask)), canvas_of(mask))


@pytest.mark.parametrize("height, width", SIZES)
def test_same_blocks_as_sdk(height, width):
    # Identical bytes, except the zero byte the SDK appends when its bits end on a byte.
    for mask in random_masks(height, width, seed=2):
        ours = mask_to_rle(mask)
        sdk = mask2rle(mask.astype(np.uint8) * 255)
        assert sdk[: len(ours)] == ours
        assert sdk[len(ours) :] in ([], [0])


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("scale", [1, 255])
def test_we_decode_sdk(height, width, scale):
    for mask in random_masks(height, width, seed=3):
        rle = mask2rle(mask.astype(np.uint8) * scale)
        np.testing.assert_array_equal(rle_to_mask(rle, height, width), mask)


def test_long_gaps():
    # 300 x 300 pixels = 360,000 canvas bytes: gaps longer than one 2**16-byte block,
    # including exact multiples of 2**16 bytes (16,384 pixels).
    height, width = 300, 300
    masks = []
    mask = np.zeros((height, width), dtype=bool)
    mask.flat[[0, 16384 + 1, 16384 * 3 + 2, height * width - 1]] = True
    masks.append(mask)
    mask = np.zeros((height, width), dtype=bool)
    mask.flat[16384 : 16384 * 3] = True  # a run of exactly 2 * 2**16 bytes
    masks.append(mask)
    mask = np.zeros((height, width), dtype=bool)
    mask.flat[-1] = True
    masks.append(mask)
    for mask in masks:
        rle = mask_to_rle(mask)
        np.testing.assert_array_equal(rle_to_mask(rle, height, width), mask)
        np.testing.assert_array_equal(decode_rle(rle), canvas_of(mask))
        sdk = mask2rle(mask.astype(np.uint8) * 255)
        assert sdk[: len(rle)] == rle
        np.testing.assert_array_equal(rle_to_mask(sdk, height, width), mask)
    assert len(mask_to_rle(masks[2])) < 80  # runs, not literals


@pytest.mark.parametrize(
    "dtype, on", [(np.uint8, 1), (np.uint8, 255), (np.int64, 1), (np.int64, 255), (np.int16, 0)]
)
def test_mask_dtypes_and_values(dtype, on):
    ref = np.random.default_rng(4).random((9, 11)) < 0.4
    if on == 0:
        ref[:] = False
    mask = ref.astype(dtype) * dtype(on)
    assert mask_to_rle(mask) == mask_to_rle(ref)
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask), 9, 11), ref)


def test_regions_of_a_label_map():
    rng = np.random.default_rng(5)
    small = rng.integers(0, 12, (6, 8))
    labels = np.kron(small, np.ones((5, 7), dtype=np.int64))[:29, :53]
    labels[rng.random(labels.shape) < 0.05] = 40  # scattered pixels, many runs
    out = regions_to_rle(labels)
    assert sorted(out) == np.unique(labels).tolist()
    for region, rle in out.items():
        mask = labels == region
        assert rle == mask_to_rle(mask)
        np.testing.assert_array_equal(rle_to_mask(rle, *labels.shape), mask)
        np.testing.assert_array_equal(decode_rle(rle), canvas_of(mask))


def test_regions_ids_subset_absent_and_empty():
    labels = np.array([[0, 0, 3], [3, 5, 5]], dtype=np.int32)
    out = regions_to_rle(labels, ids=[5, 9, 5, np.int64(0)])
    assert sorted(out) == [0, 5, 9]
    assert all(type(k) is int for k in out)
    np.testing.assert_array_equal(rle_to_mask(out[5], 2, 3), labels == 5)
    assert out[9] == mask_to_rle(np.zeros((2, 3), dtype=bool))
    assert not rle_to_mask(out[9], 2, 3).any()
    assert regions_to_rle(labels, ids=[]) == {}


def test_regions_negative_and_wide_ids():
    labels = np.array([[-4, 70000], [70000, -4]], dtype=np.int64)
    out = regions_to_rle(labels)
    assert sorted(out) == [-4, 70000]
    np.testing.assert_array_equal(rle_to_mask(out[-4], 2, 2), labels == -4)


def test_regions_unique_list_objects():
    out = regions_to_rle(np.zeros((2, 2), dtype=np.uint8), ids=[1, 2])
    out[1].append(0)
    assert out[1] != out[2]


@pytest.mark.parametrize("word, sizes", [(8, (3, 4, 8, 16)), (16, (2, 5, 1, 9)), (3, (1, 2, 3, 4))])
def test_decode_any_word_size_runs_and_literals(word, sizes):
    rng = np.random.default_rng(6)
    height, width = 11, 7
    mask = rng.random((height, width)) < 0.5
    top = min(255, 2**word - 1)
    canvas = rng.integers(0, top + 1, height * width * 4)
    canvas[3::4] = np.where(mask.ravel(), rng.integers(1, top + 1, mask.size), 0)
    canvas[100:160] = np.tile([0, 0, 0, top], 15)
    mask.flat[25:40] = True
    canvas[200:240] = top  # a long run of one value
    mask.flat[50:60] = True
    canvas[240:300] = 0
    mask.flat[60:75] = False
    rle = reference_encode(canvas, word, sizes, rng)
    np.testing.assert_array_equal(decode_rle(rle), canvas)  # the helper is right
    np.testing.assert_array_equal(rle_to_mask(rle, height, width), mask)


def test_decode_alpha_only_counts():
    mask = np.array([[True, False, True]])
    canvas = np.array([0, 0, 0, 255, 9, 9, 9, 0, 255, 255, 255, 1])
    np.testing.assert_array_equal(rle_to_mask(encode_rle(canvas), 1, 3), mask)


def test_decode_bytes_and_trailing_bytes():
    mask = np.eye(5, dtype=bool)
    rle = mask_to_rle(mask)
    np.testing.assert_array_equal(rle_to_mask(bytes(rle), 5, 5), mask)
    np.testing.assert_array_equal(rle_to_mask(rle + [0, 0, 7], 5, 5), mask)
    np.testing.assert_array_equal(rle_to_mask(np.array(rle), 5, 5), mask)


def test_decode_clips_a_run_past_the_end():
    # Header for 8 values (2 pixels), then one run of 16 values of 255 (field size 4).
    bits = f"{8:032b}{7:05b}" + "0010" + "0011" + "0111" + "1111" + "1" + "01" + "1111" + "1" * 8
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]
    np.testing.assert_array_equal(rle_to_mask(rle, 1, 2), [[True, True]])


def test_decode_rejects_wrong_count():
    rle = mask_to_rle(np.ones((4, 6), dtype=bool))
    with pytest.raises(ValueError, match="96"):
        rle_to_mask(rle, 6, 6)
    with pytest.raises(ValueError):
        rle_to_mask(mask2rle(np.ones((4, 6), dtype=np.uint8))[:-1], 4, 5)


def test_decode_rejects_truncated():
    mask = np.random.default_rng(7).random((20, 30)) < 0.5
    rle = mask_to_rle(mask)
    for cut in (1, 3, len(rle) // 2, len(rle) - 8):
        with pytest.raises(ValueError):
            rle_to_mask(rle[:cut], 20, 30)
    literal = encode_rle(np.arange(40) % 7)  # literal blocks, cut inside one
    with pytest.raises(ValueError, match="truncated"):
        rle_to_mask(literal[: len(literal) // 2], 2, 5)


@pytest.mark.parametrize(
    "rle, error",
    [
        ([], ValueError),
        ([0, 0, 0], ValueError),
        ([0, 0, 1, 300, 0, 0, 0, 0], ValueError),
        ([0, 0, -1, 0, 0, 0, 0, 0], ValueError),
        ([0.5] * 10, ValueError),
        ([[0, 0], [0, 0]], ValueError),
        ("0,0,0", TypeError),
        (None, TypeError),
    ],
)
def test_decode_rejects_bad_input(rle, error):
    with pytest.raises(error):
        rle_to_mask(rle, 2, 2)


def test_decode_rejects_bad_size():
    rle = mask_to_rle(np.ones((2, 2), dtype=bool))
    with pytest.raises(TypeError):
        rle_to_mask(rle, 2.0, 2)
    with pytest.raises(TypeError):
        rle_to_mask(rle, True, 2)
    with pytest.raises(ValueError):
        rle_to_mask(rle, 0, 4)


@pytest.mark.parametrize(
    "mask, error",
    [
        (np.array([[0, 2]], dtype=np.uint8), ValueError),
        (np.array([[1, 255]], dtype=np.uint8), ValueError),
        (np.array([[0.0, 1.0]]), ValueError),
        (np.zeros((2, 2, 2), dtype=bool), ValueError),
        (np.zeros((0, 3), dtype=bool), ValueError),
        ([[0, 1]], TypeError),
    ],
)
def test_encode_rejects_bad_masks(mask, error):
    with pytest.raises(error):
        mask_to_rle(mask)


def test_regions_rejects_bad_input():
    with pytest.raises(ValueError):
        regions_to_rle(np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        regions_to_rle(np.zeros(9, dtype=np.int32))
    with pytest.raises(TypeError):
        regions_to_rle(np.zeros((3, 3), dtype=np.int32), ids=3)
    with pytest.raises(TypeError):
        regions_to_rle(np.zeros((3, 3), dtype=np.int32), ids=[1.5])
    with pytest.raises(TypeError):
        regions_to_rle([[0, 1]])


# ---------------------------------------------------------------- properties


@st.composite
def masks(draw):
    """Boolean masks: random pixels, or long runs (to cross the 2**16-byte block limit)."""
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
        return draw(hnp.arrays(bool, shape))
    runs = draw(st.lists(st.integers(1, 40_000), min_size=1, max_size=8))
    flat = np.repeat(np.arange(len(runs)) % 2 == draw(st.integers(0, 1)), runs)
    width = draw(st.integers(1, min(flat.size, 500)))
    height = flat.size // width
    return flat[:height * width].reshape(height, width)


@settings(max_examples=150, deadline=None)
@given(masks())
def test_decode_of_encode_is_the_mask(mask):
    rle = mask_to_rle(mask)
    assert all(0 <= b <= 255 for b in rle)
    np.testing.assert_array_equal(rle_to_mask(rle, *mask.shape), mask)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_valid_stream_decodes_to_its_alpha_channel(data):
    """Any word size and field sizes, runs and literals at random, any byte values."""
    height, width = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    word = data.draw(st.integers(1, 8))
    sizes = tuple(data.draw(st.lists(st.integers(1, 8), min_size=4, max_size=4)))
    canvas = np.array(data.draw(st.lists(st.integers(0, 2**word - 1), min_size=4 * height * width,
                                         max_size=4 * height * width)))
    if data.draw(st.booleans()):
        canvas[: 4 * height * width // 2] = canvas[0]  # a long stretch of one value: runs
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rle = reference_encode(canvas, word, sizes, rng)
    expected = (canvas[3::4] != 0).reshape(height, width)
    np.testing.assert_array_equal(rle_to_mask(rle, height, width), expected)


def _decode_or_refuse(rle, height, width):
    try:
        mask = rle_to_mask(rle, height, width)
    except (TypeError, ValueError):
        return
    assert mask.shape == (height, width) and mask.dtype == bool


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 255), max_size=64), st.integers(1, 5), st.integers(1, 5))
def test_decoder_fuzz_on_random_bytes(rle, height, width):
    _decode_or_refuse(rle, height, width)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decoder_fuzz_behind_a_valid_header(data):
    """A header with the right value count and random word and field sizes, then junk."""
    height, width = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    header = (f"{4 * height * width:032b}" + f"{data.draw(st.integers(0, 31)):05b}"
              + "".join(f"{data.draw(st.integers(0, 15)):04b}" for _ in range(4)))
    tail = data.draw(st.lists(st.integers(0, 1), max_size=600))
    bits = header + "".join(map(str, tail))
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[k:k + 8], 2) for k in range(0, len(bits), 8)]
    _decode_or_refuse(rle, height, width)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.lists(st.integers()),  # any ints, negative and huge
    st.lists(st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=2))),
    st.binary(max_size=64),
    st.lists(st.lists(st.integers(0, 255), max_size=3), max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=3),
    st.text(max_size=8),
    st.integers(),
    st.none(),
))
def test_decoder_fuzz_on_anything(rle):
    _decode_or_refuse(rle, 2, 3)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_decoder_fuzz_on_damaged_valid_rles(data):
    mask = data.draw(masks())
    rle = mask_to_rle(mask)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(rle)))
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip" and at < len(rle):
            rle[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            rle = rle[:at]
        else:
            rle = rle[:at] + [data.draw(st.integers(0, 255))] + rle[at:]
    _decode_or_refuse(rle, *mask.shape)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    hnp.arrays(st.sampled_from([np.int8, np.int32, np.int64]),
               st.tuples(st.integers(1, 20), st.integers(1, 20)), elements=st.integers(-3, 6)),
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20)),
               elements=st.integers(250, 255))),
    st.one_of(st.none(), st.lists(st.integers(-5, 255), max_size=6)))
def test_regions_to_rle_equals_mask_to_rle_per_region(labels, ids):
    out = regions_to_rle(labels, ids)
    expected_ids = sorted(set(np.unique(labels).tolist() if ids is None else ids))
    assert sorted(out) == expected_ids
    for region in expected_ids:
        assert out[region] == mask_to_rle(labels == region)
