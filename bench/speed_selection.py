"""Speed cases for selection and uncertainty, each against its named alternative.

    .venv/bin/python bench/speed_selection.py

- the exact natural-breaks split vs ``jenkspy.jenks_breaks(n_classes=2)`` and vs scikit-learn
  ``KMeans(n_clusters=2, n_init=10)``, on realistic superpixel scores;
- head-only vs full-network MC dropout (T passes, one image).

Every case is a dict with ``ours_ms``, ``anchor``, ``anchor_ms``, ``speedup`` and ``exact``
(whether the anchor's result equals ours). Times are medians over the timed runs, after one
warm-up run. :mod:`bench.speed` imports :func:`bench_split` and :func:`bench_mc`.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbsal_backend.engine.selection import (  # noqa: E402
    kmeans_split,
    natural_breaks_split,
    within_group_sse,
)
from dbsal_backend.engine.uncertainty import mc_dropout  # noqa: E402


def _time_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` in ms over ``repeats`` runs after a warm-up; and its result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def _case(ours_ms: float, anchor: str, anchor_ms: float, exact: bool, **extra: Any) -> dict:
    return {"ours_ms": round(ours_ms, 3), "anchor": anchor, "anchor_ms": round(anchor_ms, 3),
            "speedup": round(anchor_ms / ours_ms, 1), "exact": bool(exact), **extra}


def superpixel_like_scores(n: int, seed: int = 0, n_classes: int = 11) -> np.ndarray:
    """Scores shaped like per-superpixel entropies: mostly low, a tail of high (15%), in bits."""
    rng = np.random.default_rng(seed)
    n_high = int(round(0.15 * n))
    scores = np.concatenate([rng.beta(2, 12, n - n_high), rng.beta(5, 3, n_high)])
    rng.shuffle(scores)
    return scores * np.log2(n_classes)


def bench_split(n: int = 5000, repeats: int = 20, seed: int = 0) -> dict[str, dict]:
    """Exact natural breaks vs jenkspy and vs k-means on ``n`` superpixel-like scores.

    Returns
    -------
    dict
        ``{"vs_jenkspy": case, "vs_kmeans": case}``; the k-means case also has ``sse_ratio``
        (its within-group sum of squares over ours, >= 1) and ``n_differ`` (superpixels on the
        other side).
    """
    import jenkspy

    scores = superpixel_like_scores(n, seed)
    ours_ms, ours = _time_ms(lambda: natural_breaks_split(scores), repeats)

    def jenks() -> np.ndarray:
        return scores > jenkspy.jenks_breaks(scores, n_classes=2)[1]

    jenks_ms, jenks_mask = _time_ms(jenks, repeats)
    kmeans_ms, kmeans_mask = _time_ms(lambda: kmeans_split(scores, seed=seed), repeats)
    ours_sse = within_group_sse(scores, ours)
    return {
        "vs_jenkspy": _case(ours_ms, "jenkspy.jenks_breaks(n_classes=2)", jenks_ms,
                            np.array_equal(jenks_mask, ours), n=n, n_high=int(ours.sum())),
        "vs_kmeans": _case(ours_ms, "sklearn KMeans(n_clusters=2, n_init=10)", kmeans_ms,
                           np.array_equal(kmeans_mask, ours), n=n,
                           sse_ratio=within_group_sse(scores, kmeans_mask) / ours_sse,
                           n_differ=int((kmeans_mask != ours).sum())),
    }


def bench_mc(height: int, width: int, n_classes: int = 11, n_samples: int = 20,
             arch: str = "efficientnet_lite0", repeats: int | None = None,
             seed: int = 0) -> dict:
    """Head-only vs full-network MC dropout for one random ``height x width`` image.

    The model is ``build_model(arch, n_classes, pretrained=False)`` on ``pick_device("auto")``.
    The warm-up runs use 2 passes; ``repeats`` timed runs follow (default: 3 below one
    megapixel, else 1). Each timed run starts from the same torch seed, so ``exact`` says whether
    both modes gave the same statistics (``max_abs_diff`` at most 1e-5).
    """
    if repeats is None:
        repeats = 3 if height * width < 1_000_000 else 1
    from dbsal_backend.engine.devices import pick_device
    from dbsal_backend.engine.networks import build_model

    device = pick_device("auto")
    model = build_model(arch, n_classes, pretrained=False).to(device)
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    image = image.to(device)

    def run(mode: str, samples: int = n_samples):
        torch.manual_seed(seed)
        stats = mc_dropout(model, image, n_samples=samples, mode=mode)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return stats

    times: dict[str, list[float]] = {"head": [], "full": []}
    results = {}
    for mode in times:
        run(mode, samples=2)
        for _ in range(repeats):
            start = time.perf_counter()
            results[mode] = run(mode)
            times[mode].append((time.perf_counter() - start) * 1e3)
    diff = max((results["head"].mean_probs - results["full"].mean_probs).abs().max().item(),
               (results["head"].expected_entropy - results["full"].expected_entropy)
               .abs().max().item())
    return _case(statistics.median(times["head"]), "full-network MC dropout",
                 statistics.median(times["full"]), diff <= 1e-5, max_abs_diff=diff,
                 size=f"{height}x{width}", n_samples=n_samples, arch=arch, device=str(device),
                 threads=torch.get_num_threads(), repeats=repeats)


def main() -> dict:
    """Run every case (360x480 and 1024x2048 for MC dropout) and print the results as JSON."""
    results: dict[str, dict] = {}
    for name, case in bench_split(n=5000).items():
        results[f"split_5000_{name}"] = case
    for height, width in ((360, 480), (1024, 2048)):
        results[f"mc_dropout_T20_{height}x{width}"] = bench_mc(height, width)
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
