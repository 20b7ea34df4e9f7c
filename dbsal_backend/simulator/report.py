"""What runs show: mean curves over seeds, paired comparisons at equal clicks and step by
step, the results document (and several merged into one), its text summary and its plot."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from .annotator import ClickModel
from .records import SimulatedStep, with_cai_clicks


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Linear interpolation on a curve; None outside it."""
    if not xs or x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    return float(np.interp(x, xs, ys))


def aggregate(runs: dict[str, dict[int, list[SimulatedStep]]]) -> dict[str, list[dict]]:
    """Mean over seeds per step: the ``strategies`` block of the results JSON."""
    out = {}
    for name, by_seed in runs.items():
        n_steps = min(len(r) for r in by_seed.values())
        rows = []
        for s in range(n_steps):
            recs = [r[s] for r in by_seed.values()]
            per_image = [n for r in recs for n in r.regions_per_image]
            right = sum(r.prelabels_right for r in recs)
            judged = sum(r.prelabels_judged for r in recs)
            rows.append({
                "step": s,
                "images": float(np.mean([r.images for r in recs])),
                "regions": float(np.mean([r.regions for r in recs])),
                "corrections": float(np.mean([r.corrections for r in recs])),
                "clicks": float(np.mean([r.clicks for r in recs])),
                "cai_clicks": (float(np.mean([r.cai_clicks for r in recs]))
                               if all(r.cai_clicks is not None for r in recs) else None),
                "pixels_fraction": float(np.mean([r.pixels_fraction for r in recs])),
                "miou": float(np.mean([r.miou for r in recs])),
                "miou_std": float(np.std([r.miou for r in recs])),
                "seeds": len(recs),
                "regions_per_image_median": float(np.median(per_image)) if per_image else None,
                "prelabel_accuracy": right / judged if judged else None,
            })
        out[name] = rows
    return out


def compare_at_clicks(runs: dict[str, dict[int, list[SimulatedStep]]], reference: str,
                      others: Sequence[str], anchor: str | None = None) -> dict[str, list[dict]]:
    """Paired differences at equal clicks: for each post-seed step of ``reference`` and each
    seed, the other strategy's mIoU interpolated (linearly, on its own curve of that seed) at
    the reference's clicks. ``None`` where the other curve does not reach that far.

    With ``anchor`` (the ``control``: no new labels, the same training), the other curve at
    step ``s`` starts from the anchor's point at step ``s`` instead of the seed model: every
    point compared has had at least as much training as the reference's, so a cheap step is
    not credited with what the extra fine-tuning alone gives."""
    out = {}
    ref = runs[reference]
    for other in others:
        if other not in runs or other == reference:
            continue
        rows = []
        n_steps = min(len(r) for r in ref.values())
        for s in range(1, n_steps):
            diffs = []
            for seed, records in ref.items():
                theirs = runs[other].get(seed)
                if not theirs:
                    continue
                if anchor is not None:
                    base = runs[anchor].get(seed)
                    if not base or len(base) <= s or len(theirs) <= s:
                        continue
                    theirs = [base[s]] + theirs[s:]
                value = _interp([r.clicks for r in theirs], [r.miou for r in theirs],
                                records[s].clicks)
                if value is not None:
                    diffs.append(records[s].miou - value)
            rows.append({"step": s, "clicks": float(np.mean([r[s].clicks for r in ref.values()])),
                         "miou_difference": float(np.mean(diffs)) if diffs else None,
                         "std": float(np.std(diffs)) if diffs else None, "seeds": len(diffs)})
        out[other] = rows
    return out


def compare_at_steps(runs: dict[str, dict[int, list[SimulatedStep]]], reference: str,
                     other: str) -> list[dict]:
    """Paired differences step by step (same seed, same step): for a strategy whose clicks do
    not grow (``control``), how much of the reference's gain its labels bring."""
    ref, theirs = runs[reference], runs[other]
    rows = []
    for s in range(1, min(len(r) for r in ref.values())):
        diffs = [records[s].miou - theirs[seed][s].miou for seed, records in ref.items()
                 if seed in theirs and len(theirs[seed]) > s]
        rows.append({"step": s, "miou_difference": float(np.mean(diffs)) if diffs else None,
                     "std": float(np.std(diffs)) if diffs else None, "seeds": len(diffs)})
    return rows


def mean_difference(rows: list[dict]) -> float | None:
    """Mean of the per-step differences that exist."""
    values = [r["miou_difference"] for r in rows if r["miou_difference"] is not None]
    return float(np.mean(values)) if values else None


def clicks_to_reach(rows: list[dict], miou: float) -> float | None:
    """Clicks at which a mean curve first reaches ``miou`` (interpolated); None if never."""
    for a, b in zip(rows, rows[1:]):
        if a["miou"] >= miou:
            return a["clicks"]
        if b["miou"] >= miou:
            t = (miou - a["miou"]) / (b["miou"] - a["miou"])
            return a["clicks"] + t * (b["clicks"] - a["clicks"])
    return rows[0]["clicks"] if rows and rows[0]["miou"] >= miou else None


def plot(strategies: dict[str, list[dict]], path: str | Path, title: str = "") -> None:
    """Two panels: mIoU against clicks and against labeled pixels, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "clicks", "annotator clicks"),
                           (axes[1], "pixels_fraction", "pixels labeled (share of pool)")):
        for name, rows in strategies.items():
            y = np.array([r["miou"] for r in rows]) * 100
            if name == "full":
                ax.axhline(y[0], color="black", ls="--", lw=1, label=f"full ({y[0]:.1f})")
                continue
            x = np.array([r[key] for r in rows])
            sd = np.array([r["miou_std"] for r in rows]) * 100
            ax.plot(x, y, marker="o", ms=3, label=name)
            ax.fill_between(x, y - sd, y + sd, alpha=0.12)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation mIoU (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results(runs: dict[str, dict[int, list[SimulatedStep]]], settings: dict, default: str,
            cost_model: str, title: str) -> dict:
    """The results document: settings, cost model, mean curves, the comparison at equal clicks,
    full supervision's share, and every run."""
    names = list(runs)
    strategies = aggregate(runs)
    comparison = compare_at_clicks(runs, default, [n for n in names
                                                   if n not in (default, "full", "control")])
    result = {
        "title": title,
        "settings": settings,
        "cost_model": cost_model,
        "default_strategy": default,
        "strategies": strategies,
        "at_equal_clicks": {"reference": default, "differences": comparison,
                            "mean_over_steps": {n: mean_difference(rows)
                                                for n, rows in comparison.items()}},
        "runs": {n: {str(s): [asdict(r) for r in recs] for s, recs in by.items()}
                 for n, by in runs.items()},
    }
    if "control" in runs and default in runs:
        result["against_control"] = compare_at_steps(runs, default, "control")
        same = compare_at_clicks(runs, default, [n for n in names
                                                 if n not in (default, "full", "control")],
                                 anchor="control")
        result["at_equal_clicks_and_training"] = {
            "reference": default, "anchor": "control", "differences": same,
            "mean_over_steps": {n: mean_difference(rows) for n, rows in same.items()}}
    if "full" in strategies and default in strategies:
        full = strategies["full"][0]
        reach = clicks_to_reach(strategies[default], 0.9 * full["miou"])
        result["full_supervision"] = {
            "miou": full["miou"], "clicks": full["clicks"], "cai_clicks": full["cai_clicks"],
            "clicks_for_90_percent": reach,
            "share_of_full_clicks": reach / full["clicks"] if reach is not None else None}
    return result


def combine(documents: list[dict], default: str | None = None,
            rename: dict[str, str] | None = None) -> dict:
    """One results document from several runs' (same settings but the seeds and strategies).

    ``rename`` gives strategies new names (old name to new, applied before anything else and
    recorded as ``settings["renamed"]``): e.g. the runs of an earlier default under the name it
    has now. The settings are those of the first run of the default strategy (of the first run
    when none has it); ``combined_from`` says, per run, which settings differ from them."""
    runs: dict[str, dict[int, list[SimulatedStep]]] = {}
    if rename:
        documents = [_renamed(d, rename) for d in documents]
    default = default or documents[0]["default_strategy"]
    base = next((d for d in documents if default in d["runs"]), documents[0])
    settings = dict(base["settings"])
    settings["seeds"] = sorted({s for d in documents for s in d["settings"]["seeds"]})
    settings["strategies"] = {k: v for d in documents for k, v in d["settings"]["strategies"].items()}
    settings["combined_from"] = [
        {"seeds": d["settings"]["seeds"], "strategies": list(d["runs"]), "seconds": d.get("seconds"),
         "differs": {k: v for k, v in d["settings"].items()
                     if k not in ("seeds", "strategies") and v != base["settings"].get(k)}}
        for d in documents]
    if rename:
        settings["renamed"] = dict(rename)
    for document in documents:
        clicks = ClickModel(**document["settings"]["clicks"])
        for name, by_seed in document["runs"].items():
            for seed, records in by_seed.items():
                runs.setdefault(name, {})[int(seed)] = [
                    with_cai_clicks(SimulatedStep(**r), clicks) for r in records]
    return results(runs, settings, default, base["cost_model"], base["title"])


def _renamed(document: dict, rename: dict[str, str]) -> dict:
    """``document`` with its strategies renamed (runs, settings and default)."""
    new = lambda name: rename.get(name, name)  # noqa: E731
    settings = dict(document["settings"])
    settings["strategies"] = {new(k): {**v, "name": new(k)}
                              for k, v in settings["strategies"].items()}
    return {**document, "settings": settings, "default_strategy": new(document["default_strategy"]),
            "runs": {new(k): v for k, v in document["runs"].items()}}


def cost_model_text(clicks: ClickModel) -> str:
    return (f"whole image: per class and connected part of >= {100 * clicks.min_part:g}% of "
            f"the image, the vertices of its outline after cv2.approxPolyDP (tolerance "
            f"{clicks.tolerance} px at full size) + {clicks.label_click} label click; reviewed "
            f"region: 0 clicks if the pre-label is the true dominant class, else "
            f"{clicks.relabel_clicks}; with repainting answers, every part of another class >= "
            f"{100 * clicks.min_part:g}% of the image inside it repainted as a polygon (priced "
            f"as above), with dominant-class answers nothing more; void pixels cost nothing. "
            f"cai_clicks: the same answers priced as Cai et al. (CVPR 2021) do, "
            f"{clicks.label_click} click per region asked (right pre-label or not) instead of 0 "
            f"or {clicks.relabel_clicks}, polygons as above")


def summary(result: dict) -> str:
    """A short text table of the mean curves and the comparison at equal clicks."""
    lines = []
    for name, rows in result["strategies"].items():
        cells = ", ".join(f"{r['clicks']:.0f}:{100 * r['miou']:.1f}" for r in rows)
        lines.append(f"{name:>9}  clicks:mIoU  {cells}")
    means = result["at_equal_clicks"]["mean_over_steps"]
    for name, value in means.items():
        if value is not None:
            lines.append(f"{result['default_strategy']} - {name} at equal clicks: "
                         f"{100 * value:+.2f} mIoU (mean over steps)")
    for name, value in result.get("at_equal_clicks_and_training", {}).get(
            "mean_over_steps", {}).items():
        if value is not None:
            lines.append(f"{result['default_strategy']} - {name} at equal clicks, curves from "
                         f"the control: {100 * value:+.2f} mIoU (mean over steps)")
    if "against_control" in result:
        cells = ", ".join(f"{100 * r['miou_difference']:+.1f}" for r in result["against_control"]
                          if r["miou_difference"] is not None)
        lines.append(f"{result['default_strategy']} - control (same step): {cells}")
    if "full_supervision" in result:
        lines.append(f"full supervision: {result['full_supervision']}")
    return "\n".join(lines)
