"""Speed benchmark: every case against its named alternative, in the same run.

    .venv/bin/python bench/speed.py [--data ../shared/data/camvid] [--out bench/results/speed.json]

Cases, at 360x480 and 1024x2048:
- head-only vs full-network MC dropout, T=20 (target >= 5x);
- our brush RLE vs label_studio_sdk.converter.brush.mask2rle, 1,000 superpixel regions (>= 50x);
- our exact natural-breaks split vs jenkspy.jenks_breaks(n_classes=2) and vs KMeans(k=2),
  5,000 superpixels (exact, and faster);
- OpenCV SLIC vs skimage.segmentation.slic at the same segment count, with the cache's second call.
Output keys: {"<case>": {"ours_ms", "anchor", "anchor_ms", "speedup", ...}}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed_codec import bench_rle, bench_slic  # noqa: E402
from speed_selection import bench_mc, bench_split  # noqa: E402

SIZES = ((360, 480), (1024, 2048))


def plot(results: dict, path: str | Path) -> None:
    """Horizontal bars: speed-up of each case over its anchor (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [(k, v) for k, v in results.items() if not k.startswith("_")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(cases) + 1.2))
    names = [k for k, _ in cases][::-1]
    speedups = [v["speedup"] for _, v in cases][::-1]
    ax.barh(names, speedups, color="tab:red")
    for y, (s, (_, v)) in enumerate(zip(speedups, cases[::-1])):
        ax.text(s, y, f" {s:.1f}x  ({v['ours_ms']:.1f} vs {v['anchor_ms']:.1f} ms)", va="center",
                fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1, color="black", lw=0.8)
    ax.set_xlabel("speed-up over the anchor (log scale)")
    ax.set_xlim(0.8, max(speedups) * 30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="CamVid root (a real image for SLIC); optional")
    p.add_argument("--out", default="bench/results/speed.json")
    p.add_argument("--n-segments", type=int, default=1000)
    p.add_argument("--replot", action="store_true", help="only redraw the plot from --out")
    args = p.parse_args(argv)
    if args.replot:
        results = json.loads(Path(args.out).read_text())
        plot(results, Path(args.out).with_suffix(".png"))
        return results

    started = time.perf_counter()
    results: dict = {}
    for h, w in SIZES:
        tag = f"{h}x{w}"
        results[f"mc_dropout_T20_{tag}"] = bench_mc(h, w)
        results[f"rle_1000_regions_{tag}"] = bench_rle(h, w, n_regions=1000)
        results[f"slic_{tag}"] = bench_slic(h, w, args.n_segments, data=args.data)
        print(json.dumps({k: v for k, v in results.items() if k.endswith(tag)}, indent=1), flush=True)
    for name, case in bench_split(n=5000).items():
        results[f"split_5000_{name}"] = case
    results["_meta"] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    plot(results, Path(args.out).with_suffix(".png"))
    print("\ncase                              ours_ms   anchor_ms   speedup")
    for k, v in results.items():
        if not k.startswith("_"):
            print(f"{k:32s} {v['ours_ms']:9.2f} {v['anchor_ms']:11.2f} {v['speedup']:9.1f}x  vs {v['anchor']}")
    return results


if __name__ == "__main__":
    main()
