"""Label Studio brush RLE codec (``BrushLabels`` ``value.rle``), without Label Studio imports.

A brush RLE encodes the flattened RGBA canvas of the image (``H * W * 4`` bytes, row-major;
the editor reads the alpha byte, so painted pixels are 255, not 1) in the bit format of
thi.ng's ``rle-pack``, as in ``label_studio_sdk.converter.brush``:

- header: 32-bit value count, 5-bit word size - 1, four 4-bit run-length field sizes - 1;
- then blocks, most significant bit first: 1 bit "run?", 2 bits index into the field sizes,
  ``length - 1`` in that many bits, then one value (run) or ``length`` values (literals);
- zero bits pad the last byte.

The encoder writes masks as 0/255 on all four channels with word size 8 and field sizes
(3, 4, 8, 16), block for block what the SDK's ``mask2rle`` writes for a 0/255 mask (runs longer
than 2**16 bytes are split into 2**16-byte blocks); only the SDK's extra zero byte when the bits
already end on a byte boundary is left out.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..engine.checks import is_int

__all__ = ["mask_to_rle", "regions_to_rle", "rle_to_mask"]

_WORD_SIZE = 8
_RLE_SIZES = (3, 4, 8, 16)
_MAX_BLOCK = 1 << 16  # longest run one block with a 16-bit length field holds
_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_PIXELS = (2**32 - 1) // 4  # the value count is a 32-bit field


def _header(num: int) -> int:
    """The 53-bit header of a canvas of ``num`` bytes, as an integer."""
    value = num << 21 | (_WORD_SIZE - 1) << 16
    for k, size in enumerate(_RLE_SIZES):
        value |= (size - 1) << (12 - 4 * k)
    return value


def _check_shape(shape: tuple[int, ...], what: str) -> None:
    if len(shape) != 2:
        raise ValueError(f"{what} must be a 2-D array (H x W), got shape {shape}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{what} must have at least one pixel, got shape {shape}")
    if shape[0] * shape[1] > _MAX_PIXELS:
        raise ValueError(f"{what} has {shape[0] * shape[1]} pixels; at most {_MAX_PIXELS} fit")


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Encode one binary mask as a Label Studio brush RLE.

    Parameters
    ----------
    mask : numpy.ndarray
        ``H x W`` mask: ``bool``, or integers with values 0/1 or 0/255.

    Returns
    -------
    list of int
        RLE bytes of the RGBA canvas, 255 on all channels where the mask is set.
    """
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy array, got {type(mask).__name__}")
    _check_shape(mask.shape, "mask")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"mask must be bool or integer, got dtype {mask.dtype}")
        top = int(mask.max())
        if top not in (0, 1, 255) or not np.all((mask == 0) | (mask == top)):
            raise ValueError("integer mask values must be 0/1 or 0/255")
    return regions_to_rle((mask != 0).view(np.uint8), ids=[1])[1]


def regions_to_rle(labels: np.ndarray, ids: Iterable[int] | None = None) -> dict[int, list[int]]:
    """Encode many regions of one label map, each as its own brush RLE.

    All run boundaries are found in one vectorised pass over the label map; each region is then
    encoded from its own runs, so the cost per region does not grow with the canvas.
    ``regions_to_rle(labels, ids)[i] == mask_to_rle(labels == i)`` for every ``i``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map ``H x W``.
    ids : iterable of int, optional
        Region ids to encode (default: every id present). Ids absent from ``labels`` give the
        RLE of an empty mask.

    Returns
    -------
    dict
        ``{id: rle}`` for each requested id.
    """
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array, got {type(labels).__name__}")
    _check_shape(labels.shape, "labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    flat = labels.ravel()
    n_pixels = flat.size

    # Pixel runs of equal labels, in canvas order.
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], starts))
    ends = np.append(starts[1:], n_pixels)
    values = flat[starts].astype(np.int64)

    if ids is None:
        groups = np.unique(values)
    else:
        try:
            wanted = list(ids)
        except TypeError:
            raise TypeError(f"ids must be an iterable of ints, got {type(ids).__name__}") from None
        if not all(is_int(i) for i in wanted):
            raise TypeError(f"ids must be ints, got {wanted[:5]}...")
        groups = np.unique(np.array(wanted, dtype=np.int64))
        keep = np.isin(values, groups)
        starts, ends, values = starts[keep], ends[keep], values[keep]
    if groups.size == 0:
        return {}

    # Runs grouped by region, in canvas order inside each region.
    order = np.argsort(values, kind="stable")
    starts, ends = starts[order], ends[order]
    group = np.searchsorted(groups, values[order])
    n_groups, n_runs = groups.size, starts.size
    runs_per_group = np.bincount(group, minlength=n_groups)
    first = np.ones(n_runs, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    prev_end = np.zeros(n_runs, dtype=np.int64)
    prev_end[1:] = ends[:-1]
    prev_end[first] = 0

    # Canvas segments per region: (gap, run) for each run, then the trailing gap.
    last_end = np.zeros(n_groups, dtype=np.int64)
    has_runs = runs_per_group > 0
    last_index = np.cumsum(runs_per_group) - 1
    last_end[has_runs] = ends[last_index[has_runs]]
    n_segments = 2 * n_runs + n_groups
    seg_len = np.empty(n_segments, dtype=np.int64)
    seg_val = np.zeros(n_segments, dtype=np.int64)
    seg_group = np.empty(n_segments, dtype=np.int64)
    gap_pos = 2 * np.arange(n_runs) + group
    seg_len[gap_pos] = starts - prev_end
    seg_len[gap_pos + 1] = ends - starts
    seg_val[gap_pos + 1] = 255
    seg_group[gap_pos] = group
    seg_group[gap_pos + 1] = group
    tail_pos = 2 * np.cumsum(runs_per_group) + np.arange(n_groups)
    seg_len[tail_pos] = n_pixels - last_end
    seg_group[tail_pos] = np.arange(n_groups)
    nonempty = seg_len > 0
    seg_len = seg_len[nonempty] * 4  # bytes of the RGBA canvas
    seg_val, seg_group = seg_val[nonempty], seg_group[nonempty]

    # Blocks: one per segment up to 256 bytes, else 2**16-byte blocks and the rest.
    long = seg_len > 256
    n_blocks = np.where(long, -(-seg_len // _MAX_BLOCK), 1)
    seg_of_block = np.repeat(np.arange(seg_len.size), n_blocks)
    block_rank = np.arange(seg_of_block.size) - np.repeat(np.cumsum(n_blocks) - n_blocks, n_blocks)
    length = seg_len[seg_of_block]
    is_long = long[seg_of_block]
    length = np.where(is_long, np.minimum(_MAX_BLOCK, length - block_rank * _MAX_BLOCK), length)
    index = np.where(is_long, 3, np.searchsorted(np.array([8, 16, 256]), length))
    field = np.array(_RLE_SIZES, dtype=np.int64)[index]
    code = (
        (1 << (field + 10)) | (index << (field + 8)) | ((length - 1) << 8) | seg_val[seg_of_block]
    )
    width = field + 11
    block_group = seg_group[seg_of_block]

    # One byte stream: per region the header, its blocks, zero bits up to a byte boundary.
    blocks_per_group = np.bincount(block_group, minlength=n_groups)
    bits_per_group = _HEADER_BITS + np.bincount(block_group, weights=width, minlength=n_groups)
    bytes_per_group = (bits_per_group.astype(np.int64) + 7) // 8
    group_bit = 8 * (np.cumsum(bytes_per_group) - bytes_per_group)
    first_block = np.cumsum(blocks_per_group) - blocks_per_group
    before = np.cumsum(width) - width  # bits of earlier blocks, all regions
    pos = (
        group_bit[block_group]
        + _HEADER_BITS
        + before
        - np.repeat(before[first_block], blocks_per_group)
    )
    code = np.insert(code, first_block, _header(4 * n_pixels))
    width = np.insert(width, first_block, _HEADER_BITS)
    pos = np.insert(pos, first_block, group_bit)
    stream = _pack(code, width, pos, int(bytes_per_group.sum())).tolist()

    out: dict[int, list[int]] = {}
    offset = 0
    for region, size in zip(groups.tolist(), bytes_per_group.tolist()):
        out[region] = stream[offset : offset + size]
        offset += size
    return out


def _pack(code: np.ndarray, width: np.ndarray, pos: np.ndarray, n_bytes: int) -> np.ndarray:
    """Write bit fields into a zeroed byte stream, most significant bit first.

    ``code[k]`` (``width[k]`` <= 64 bits) goes to bits ``pos[k] ..``; fields must not overlap
    and ``pos`` must be non-decreasing. Each field lands in at most two 64-bit words, whose
    contributions are OR-ed per word with ``reduceat``.
    """
    code = code.astype(np.uint64)
    word = pos >> 6
    spill = (pos & 63) + width - 64  # > 0 when the field continues in the next word
    left = np.maximum(-spill, 0).astype(np.uint64)
    right = np.maximum(spill, 0).astype(np.uint64)
    high = (code << left) >> right
    words = np.zeros((n_bytes + 7) // 8 + 1, dtype=np.uint64)
    _or_into(words, word, high)
    crossing = spill > 0
    low = code[crossing] << (64 - spill[crossing]).astype(np.uint64)
    _or_into(words, word[crossing] + 1, low)
    return words.astype(">u8").view(np.uint8)[:n_bytes]


def _or_into(words: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """``words[index] |= values`` for a non-decreasing ``index`` with repeats."""
    if index.size == 0:
        return
    starts = np.flatnonzero(np.concatenate(([True], index[1:] != index[:-1])))
    words[index[starts]] |= np.bitwise_or.reduceat(values, starts)


def _as_bytes(rle: object) -> bytes:
    """Validate an RLE given as bytes or a sequence of ints in [0, 255]."""
    if isinstance(rle, (bytes, bytearray)):
        return bytes(rle)
    if isinstance(rle, str) or not hasattr(rle, "__len__"):
        raise TypeError(f"rle must be a list of ints or bytes, got {type(rle).__name__}")
    array = np.asarray(rle)
    if array.size and (array.ndim != 1 or not np.issubdtype(array.dtype, np.integer)):
        raise ValueError("rle must be a flat sequence of ints")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("rle values must be bytes in [0, 255]")
    return array.astype(np.uint8).tobytes()


def rle_to_mask(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """Decode a Label Studio brush RLE into a boolean mask.

    A pixel is set when its alpha byte (the 4th of its RGBA values) is non-zero. Any word size,
    field sizes and literal blocks are accepted; like Label Studio's decoder, a last block that
    runs past the canvas is clipped and bytes after the canvas is complete are ignored.

    Parameters
    ----------
    rle : list of int or bytes
        RLE bytes from ``value.rle``.
    height, width : int
        Image size (``original_height``, ``original_width``).

    Returns
    -------
    numpy.ndarray
        ``bool`` mask ``height x width``.

    Raises
    ------
    ValueError
        If the RLE is malformed or truncated, or its value count is not ``height * width * 4``.
    """
    for name, value in (("height", height), ("width", width)):
        if not is_int(value):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    _check_shape((int(height), int(width)), "mask")
    data = _as_bytes(rle)
    total_bits = 8 * len(data)
    if total_bits < _HEADER_BITS:
        raise ValueError(f"RLE too short for its header: {len(data)} bytes")
    head = int.from_bytes(data[:7], "big") >> (56 - _HEADER_BITS)
    num = head >> 21
    word = (head >> 16 & 31) + 1
    sizes = [(head >> (12 - 4 * k) & 15) + 1 for k in range(4)]
    n_pixels = int(height) * int(width)
    if num != 4 * n_pixels:
        raise ValueError(
            f"RLE holds {num} values but a {height}x{width} RGBA canvas has {4 * n_pixels}"
        )
    buffer = data + bytes(8)
    word_mask = (1 << word) - 1
    mask = np.zeros(n_pixels, dtype=bool)
    bits = None
    pos, i = _HEADER_BITS, 0
    while i < num:
        if pos + 3 > total_bits:
            raise ValueError(f"RLE truncated: {i} of {num} values decoded")
        offset = pos & 7
        window = int.from_bytes(buffer[pos >> 3 : (pos >> 3) + 8], "big")
        head = window >> (61 - offset) & 7
        size = sizes[head & 3]
        length = (window >> (61 - offset - size) & ((1 << size) - 1)) + 1
        pos += 3 + size
        j = min(i + length, num)
        if head >> 2:  # run: one value repeated; pixels whose alpha byte is in [i, j)
            if pos + word > total_bits:
                raise ValueError(f"RLE truncated: {i} of {num} values decoded")
            if window >> (61 - offset - size - word) & word_mask:
                mask[i >> 2 : j >> 2] = True
            pos += word
        else:  # literals: read the alpha bytes among them
            if pos + length * word > total_bits:
                raise ValueError(f"RLE truncated: {i} of {num} values decoded")
            if bits is None:
                bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
            alpha = np.arange(i + (3 - i) % 4, j, 4)
            rows = pos + (alpha - i)[:, None] * word + np.arange(word)
            mask[alpha[bits[rows].any(axis=1)] >> 2] = True
            pos += length * word
        i = j
    return mask.reshape(int(height), int(width))
