"""Speed of the brush RLE codec and of OpenCV SLIC, each against its reference, in one run.

    .venv/bin/python bench/speed_codec.py [--data /work/shared/data/camvid] [--repeats 5]

- ``bench_rle``: :func:`dbsal_backend.labelstudio.rle.regions_to_rle` on every region of a SLIC label map
  vs ``label_studio_sdk.converter.brush.mask2rle`` on one boolean mask per region; also
  :func:`~dbsal_backend.labelstudio.rle.rle_to_mask` vs the SDK's ``decode_rle``.
- ``bench_slic``: :func:`dbsal_backend.engine.superpixels.slic` (OpenCV, algorithm SLIC, ruler 10) vs
  ``skimage.segmentation.slic(compactness=10, sigma=0)`` at the same ``n_segments``, plus the
  default SLICO setting and :class:`~dbsal_backend.engine.superpixels.SuperpixelCache` miss and hit.

Every case is a dict with ``ours_ms``, ``anchor``, ``anchor_ms``, ``speedup`` (anchor / ours).
Times are medians over the timed runs after one warm-up run (``time.perf_counter``).
:mod:`bench.speed` imports :func:`bench_rle` and :func:`bench_slic`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle
from skimage.segmentation import slic as skimage_slic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbsal_backend.labelstudio.rle import regions_to_rle, rle_to_mask  # noqa: E402
from dbsal_backend.engine.superpixels import SlicParams, SuperpixelCache, slic  # noqa: E402

SIZES = ((360, 480), (1024, 2048))


def _time_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured RGB image: smooth colour noise at several scales plus a few hard edges."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.float32)
    for cells, weight in ((8, 0.5), (40, 0.35), (200, 0.15)):
        small = rng.random((max(2, height * cells // width), cells, 3), dtype=np.float32)
        image += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    image[: height // 2, width // 3 : width // 2] *= 0.4
    image[height * 2 // 3 :, :] = 0.5 * image[height * 2 // 3 :, :] + 0.3
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def load_image(height: int, width: int, data: str | Path | None = None) -> tuple[np.ndarray, str]:
    """The first CamVid training image under ``data`` resized to ``height x width``, else a
    synthetic one; returns the RGB image and a description of its source."""
    if data is not None:
        paths = sorted((Path(data) / "train" / "images").glob("*.jpg"))
        if not paths:
            raise FileNotFoundError(f"no train/images/*.jpg under {data}")
        bgr = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read {paths[0]}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(rgb), str(paths[0])
    return synthetic_image(height, width), "synthetic"


def bench_rle(
    height: int,
    width: int,
    n_regions: int = 1000,
    repeats: int = 5,
    anchor_regions: int = 100,
    data: str | Path | None = None,
) -> dict:
    """Encode every superpixel region of one image: ours vs the SDK's ``mask2rle``.

    The SDK is timed on ``anchor_regions`` evenly spaced regions (mask building included) and
    its median per-region time is scaled to all regions. Outputs of both are checked to decode
    to the same canvas before timing.
    """
    image, source = load_image(height, width, data)
    labels = slic(image, SlicParams(n_segments=n_regions))
    ids = np.arange(labels.max() + 1)
    count = ids.size
    timed = ids[np.linspace(0, count - 1, min(anchor_regions, count)).round().astype(int)]

    ours = regions_to_rle(labels)
    for region in timed[:: max(1, timed.size // 5)]:
        mask = labels == region
        sdk = mask2rle(mask.astype(np.uint8) * 255)
        if not np.array_equal(decode_rle(ours[region]), decode_rle(sdk)):
            raise AssertionError(f"region {region}: our RLE decodes differently from the SDK's")
        if not np.array_equal(rle_to_mask(sdk, height, width), mask):
            raise AssertionError(f"region {region}: our decoder disagrees with mask2rle")

    ours_ms = _time_ms(lambda: regions_to_rle(labels), repeats)
    per_region = []
    for region in timed:
        start = time.perf_counter()
        mask2rle((labels == region).astype(np.uint8) * 255)
        per_region.append(time.perf_counter() - start)
    anchor_per_region_ms = 1e3 * statistics.median(per_region)
    anchor_ms = anchor_per_region_ms * count

    sample = [ours[int(r)] for r in timed[:10]]
    decode_ms = statistics.median(
        _time_ms(lambda r=r: rle_to_mask(r, height, width), repeats) for r in sample
    )
    decode_anchor_ms = statistics.median(
        _time_ms(lambda r=r: decode_rle(r).reshape(height, width, 4)[..., 3] > 0, repeats)
        for r in sample
    )
    return {
        "ours_ms": round(ours_ms, 2),
        "anchor": "label_studio_sdk.converter.brush.mask2rle",
        "anchor_ms": round(anchor_ms, 2),
        "speedup": round(anchor_ms / ours_ms, 1),
        "n_regions": int(count),
        "ours_ms_per_region": round(ours_ms / count, 4),
        "anchor_ms_per_region": round(anchor_per_region_ms, 3),
        "rle_bytes_per_region": round(float(np.mean([len(r) for r in ours.values()])), 1),
        "decode_ms": round(decode_ms, 3),
        "decode_anchor": "label_studio_sdk.converter.brush.decode_rle",
        "decode_anchor_ms": round(decode_anchor_ms, 3),
        "decode_speedup": round(decode_anchor_ms / decode_ms, 1),
        "image": source,
        "note": (
            f"anchor timed on {timed.size} of {count} regions (median per region, mask "
            f"building included) and scaled to {count}; ours encodes all {count} in one call"
            if timed.size < count
            else f"anchor timed on all {count} regions (median per region x {count})"
        ),
    }


def bench_slic(
    height: int,
    width: int,
    n_segments: int = 1000,
    repeats: int = 3,
    data: str | Path | None = None,
) -> dict:
    """OpenCV SLIC (ours) vs ``skimage.segmentation.slic`` on the same image and segment count."""
    image, source = load_image(height, width, data)
    params = SlicParams(algorithm="SLIC", n_segments=n_segments, ruler=10.0)
    ours_ms = _time_ms(lambda: slic(image, params), repeats)
    ours_labels = slic(image, params)
    slico = SlicParams(n_segments=n_segments)
    slico_ms = _time_ms(lambda: slic(image, slico), repeats)

    def anchor() -> np.ndarray:
        return skimage_slic(image, n_segments=n_segments, compactness=10, sigma=0, start_label=0)

    anchor_ms = _time_ms(anchor, repeats)
    anchor_labels = anchor()

    with tempfile.TemporaryDirectory() as root:
        cache = SuperpixelCache(root, slico, memory_items=0)
        start = time.perf_counter()
        cache.get(image)
        miss_ms = 1e3 * (time.perf_counter() - start)
        hit_ms = _time_ms(lambda: cache.get(image), repeats, warmup=0)
    return {
        "ours_ms": round(ours_ms, 2),
        "anchor": "skimage.segmentation.slic(compactness=10, sigma=0)",
        "anchor_ms": round(anchor_ms, 2),
        "speedup": round(anchor_ms / ours_ms, 1),
        "n_segments": n_segments,
        "ours_segments": int(ours_labels.max() + 1),
        "anchor_segments": int(len(np.unique(anchor_labels))),
        "ours_params": params.key(),
        "slico_ms": round(slico_ms, 2),
        "slico_segments": int(slic(image, slico).max() + 1),
        "cache_miss_ms": round(miss_ms, 2),
        "cache_hit_ms": round(hit_ms, 2),
        "cv2_threads": cv2.getNumThreads(),
        "image": source,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run both cases at 360x480 and 1024x2048 and print one JSON dict."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, help="CamVid root (real image); else synthetic")
    parser.add_argument("--n-regions", type=int, default=1000)
    parser.add_argument("--n-segments", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the RLE cases")
    parser.add_argument("--slic-repeats", type=int, default=3, help="timed runs of SLIC")
    parser.add_argument("--anchor-regions", type=int, default=100)
    args = parser.parse_args(argv)
    results = {}
    for height, width in SIZES:
        tag = f"{height}x{width}"
        results[f"rle_{args.n_regions}_regions_{tag}"] = bench_rle(
            height,
            width,
            n_regions=args.n_regions,
            repeats=args.repeats,
            anchor_regions=args.anchor_regions,
            data=args.data,
        )
        results[f"slic_{tag}"] = bench_slic(
            height, width, args.n_segments, repeats=args.slic_repeats, data=args.data
        )
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
