"""How long until a task with pre-labelled brush regions is usable in the real Label Studio UI.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ui_render.py --data ../shared/data/camvid \
        [--out bench/results/ui_render_regions.json] [--repeats 3] [--counts 0 5 10 20 40 80 160] \
        [--sizes 360x480 1024x2048] [--timeout 120] [--variants]

Starts a real Label Studio 1.23.2 (``tests/lsserver.py``), creates a project with the 11 CamVid
classes, and for each image size and region count a task whose prediction (model version
"dbsal", the project's model version, so the editor pre-labels the task with it) holds that many
brush regions. Regions look like what the backend sends: each is a connected group of SLIC
superpixels with one of the 11 labels; together they cover about half of the image, with sizes
drawn from a log-normal distribution (a few large regions, many small ones). 360x480 tasks are
CamVid training images; 1024x2048 tasks are CamVid images cropped to 1:2 and upscaled.

Each task is opened fresh (a new page, ``/projects/P/data?task=T``) in Debian's headless Chromium
driven by Playwright, in one logged-in browser context (so the app's scripts are in the HTTP
cache, as for an annotator who has the tool open). The time until the task is *usable* is
defined and measured by ``tests/lsbrowser.py`` (``measure_usable``): image shown, every region
listed and drawn, and the main thread answering within 100 ms for 0.5 s. After that the bench
clicks the first region in the regions panel and records how long it takes to show as selected
(a check of the definition). A load that is not usable within ``--timeout`` seconds is recorded
as timed out, and larger counts at that size are then skipped.

``--variants`` adds, at 40 regions per size (``--variant-repeats`` loads each), the
investigation variants: one region covering half the image; 40 regions covering 5% in total;
40 regions marked ``readonly``; 40 regions in a project whose ``<Image>`` has
``maxWidth="640px"`` (a smaller canvas); the same 40 regions as simplified polygons
(``PolygonLabels``, ``cv2.approxPolyDP`` with a tolerance of 0.4% of the long side) instead of
brush masks; and, with ``--dpr2``, 40 regions on a device pixel ratio 2 screen (HiDPI).

Writes the JSON given by ``--out`` and a plot next to it (same name, ``.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from _camvid import BRUSH, CLASSES  # noqa: E402
from dbsal_backend.labelstudio.rle import regions_to_rle  # noqa: E402
from dbsal_backend.engine.superpixels import SlicParams, slic  # noqa: E402

CONFIGS = {"brush": BRUSH,
           "brush_maxwidth640": BRUSH.replace('zoom="true"', 'zoom="true" maxWidth="640px"'),
           "polygon": BRUSH.replace("BrushLabels", "PolygonLabels")}
MODEL_VERSION = "dbsal"


# --- tasks -------------------------------------------------------------------------------------


def camvid_images(data_root: Path) -> list[Path]:
    images = sorted((Path(data_root) / "train" / "images").glob("*.jpg"))
    if not images:
        raise SystemExit(f"no CamVid images under {data_root}/train/images")
    return images


def load_image(path: Path, height: int, width: int) -> np.ndarray:
    """RGB image of the requested size: the CamVid image itself, or a crop to the aspect, upscaled."""
    image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    aspect = height / width
    if h / w > aspect:  # too tall: crop rows around the middle
        keep = round(w * aspect)
        top = (h - keep) // 2
        image = image[top : top + keep]
    else:
        keep = round(h / aspect)
        left = (w - keep) // 2
        image = image[:, left : left + keep]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def superpixel_adjacency(sp: np.ndarray) -> list[set[int]]:
    n = int(sp.max()) + 1
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in ((sp[:, 1:], sp[:, :-1]), (sp[1:, :], sp[:-1, :])):
        diff = a != b
        pairs = np.unique(np.stack([a[diff], b[diff]], axis=1), axis=0)
        for x, y in pairs.tolist():
            neighbours[x].add(y)
            neighbours[y].add(x)
    return neighbours


def make_regions(
    image: np.ndarray, n_regions: int, coverage: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Region map (0 = no region, 1..n) of ``n_regions`` connected groups of SLIC superpixels.

    Target areas are log-normal (sigma 1) and sum to ``coverage`` of the image; each region is
    grown from a random seed superpixel through unassigned neighbours. Labels are drawn at random
    from the 11 classes.
    """
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    region_map = np.zeros((h, w), dtype=np.int32)
    if n_regions == 0:
        return region_map, []
    # Enough superpixels that the seeds alone cover at most half of the target.
    sp = slic(image, SlicParams(n_segments=max(300, 8 * n_regions, math.ceil(2 * n_regions / coverage))))
    n_sp = int(sp.max()) + 1
    areas = np.bincount(sp.ravel(), minlength=n_sp)
    neighbours = superpixel_adjacency(sp)
    weights = rng.lognormal(0.0, 1.0, n_regions)
    target = weights / weights.sum() * coverage * h * w
    owner = np.full(n_sp, -1, dtype=np.int64)
    seeds = rng.choice(n_sp, size=n_regions, replace=False)
    grown = np.zeros(n_regions)
    frontier: list[set[int]] = []
    for r, s in enumerate(seeds.tolist()):
        owner[s] = r
        grown[r] = areas[s]
    for r, s in enumerate(seeds.tolist()):
        frontier.append({x for x in neighbours[s] if owner[x] < 0})
    active = [r for r in range(n_regions) if grown[r] < target[r]]
    while active:
        still = []
        for r in active:
            candidates = [x for x in frontier[r] if owner[x] < 0]
            if not candidates:
                continue
            x = candidates[int(rng.integers(len(candidates)))]
            owner[x] = r
            grown[r] += areas[x]
            frontier[r].discard(x)
            frontier[r].update(y for y in neighbours[x] if owner[y] < 0)
            if grown[r] < target[r]:
                still.append(r)
        active = still
    lookup = np.where(owner >= 0, owner + 1, 0).astype(np.int32)
    region_map = lookup[sp]
    labels = [CLASSES[int(i)] for i in rng.integers(len(CLASSES), size=n_regions)]
    return region_map, labels


def brush_results(
    region_map: np.ndarray, labels: list[str], readonly: bool = False
) -> list[dict]:
    """One ``brushlabels`` result per region (RLE of the whole canvas, as the backend sends)."""
    h, w = region_map.shape
    ids = list(range(1, len(labels) + 1))
    rles = regions_to_rle(region_map, ids) if ids else {}
    results = []
    for i, label in zip(ids, labels):
        result = {
            "id": f"r{i}",
            "from_name": "tag",
            "to_name": "image",
            "type": "brushlabels",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": rles[i], "brushlabels": [label]},
            "score": 0.5,
        }
        if readonly:
            result["readonly"] = True
        results.append(result)
    return results


def polygon_results(region_map: np.ndarray, labels: list[str]) -> list[dict]:
    """The regions as ``polygonlabels`` results: each region's largest outer contour, simplified."""
    h, w = region_map.shape
    tolerance = 0.004 * max(h, w)
    results = []
    for i, label in enumerate(labels, 1):
        contours, _ = cv2.findContours((region_map == i).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)  # fmt: skip
        contour = cv2.approxPolyDP(max(contours, key=cv2.contourArea), tolerance, True)[:, 0, :]
        results.append({
            "id": f"p{i}", "from_name": "tag", "to_name": "image", "type": "polygonlabels",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"points": [[100 * x / w, 100 * y / h] for x, y in contour.tolist()],
                      "closed": True, "polygonlabels": [label]},
            "score": 0.5,
        })  # fmt: skip
    return results


# --- Label Studio --------------------------------------------------------------------------------


def jpeg(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, 92])  # fmt: skip
    assert ok
    return buffer.tobytes()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}"


def chromium_version(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def plot(out_png: Path, results: list[dict], subtitle: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    main_rows = [r for r in results if r.get("variant") == "main"]
    sizes = sorted({(r["height"], r["width"]) for r in main_rows})
    markers = {"polygons_simplified": ("*", "40 simplified polygons"),
               "image_maxwidth_640px": ("s", 'brush, <Image maxWidth="640px">'),
               "readonly": ("D", "brush, readonly")}  # fmt: skip
    for k, (h, w) in enumerate(sizes):
        rows = sorted((r for r in main_rows if (r["height"], r["width"]) == (h, w)),
                      key=lambda r: r["regions"])  # fmt: skip
        done = [r for r in rows if r["seconds_median"] is not None]
        line = ax.plot([r["regions"] for r in done], [r["seconds_median"] for r in done],
                       marker="o", label=f"{h}x{w} brush regions (median)")[0]  # fmt: skip
        color = line.get_color()
        ax.fill_between([r["regions"] for r in done], [min(r["seconds"]) for r in done],
                        [r["seconds_max"] for r in done], color=color, alpha=0.15)  # fmt: skip
        for r in rows:
            if r["timed_out"]:
                ax.scatter([r["regions"] + 3 * k], [r["timeout"]], marker="^", color=color)
                ax.annotate(f"> {r['timeout']:.0f} s", (r["regions"] + 3 * k, r["timeout"]),
                            fontsize=8, color=color, textcoords="offset points",
                            xytext=(-30, -12 - 10 * k))  # fmt: skip
        for variant, (marker, text) in markers.items():
            for r in results:
                if (r.get("variant") == variant and (r["height"], r["width"]) == (h, w)
                        and r["seconds_median"] is not None):  # fmt: skip
                    ax.scatter([r["regions"] + 2 * k], [r["seconds_median"]], marker=marker,
                               s=60 if marker == "*" else 30, color=color, edgecolor="black",
                               linewidth=0.5, zorder=3,
                               label=f"{h}x{w} {text}")  # fmt: skip
    ax.axhline(3, color="grey", lw=0.8, ls=":")
    ax.axhline(6, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("regions in the task")
    ax.set_ylabel("seconds until usable (from opening the task URL)")
    ax.set_title("Label Studio 1.23.2, headless Chromium: time until a pre-labelled task is usable"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def plot_subtitle(settings: dict, machine_text: str) -> str:
    cpus = machine_text.split(",")[1].strip().split(" (")[0] if "," in machine_text else "?"
    loads = settings.get("load_average_start", [None])[0], settings.get("load_average_end", [None])[0]
    return f"{cpus}, shared (1-min load average {loads[0]} at start, {loads[1]} at end)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="CamVid root (with train/images)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ui_render_regions.json")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--counts", type=int, nargs="+", default=[0, 5, 10, 20, 40, 80, 160])
    p.add_argument("--sizes", nargs="+", default=["360x480", "1024x2048"], help="HxW")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per load")
    p.add_argument("--variants", action="store_true", help="also the investigation variants")
    p.add_argument("--variant-repeats", type=int, default=2)
    p.add_argument("--dpr2", action="store_true", help="with --variants: also a HiDPI screen")
    p.add_argument("--screenshots", default=str(ROOT / ".scratch"),
                   help="folder for a screenshot per size at 40 regions ('' for none)")  # fmt: skip
    p.add_argument("--replot", action="store_true", help="only redraw the plot from --out")
    args = p.parse_args(argv)
    if args.replot:
        data = json.loads(args.out.read_text())
        plot(args.out.with_suffix(".png"), data["results"],
             plot_subtitle(data["settings"], data["machine"]))  # fmt: skip
        return

    import lsbrowser
    from label_studio_sdk import LabelStudio
    from lsserver import start_label_studio

    chromium = lsbrowser.require_browser()
    sizes = [parse_size(s) for s in args.sizes]
    images = camvid_images(args.data)
    load_start = load_average()
    started = time.time()

    # Tasks: (variant, size, count) -> task spec.
    base = {"coverage": 0.5, "readonly": False, "project": "brush", "dpr": 1,
            "repeats": args.repeats}  # fmt: skip
    specs = []
    for k, (h, w) in enumerate(sizes):
        for count in args.counts:
            specs.append({**base, "variant": "main", "height": h, "width": w, "regions": count})
    if args.variants:
        variants = [
            ("one_region_50pct", 1, {}),
            ("small_regions_5pct", 40, {"coverage": 0.05}),
            ("readonly", 40, {"readonly": True}),
            ("image_maxwidth_640px", 40, {"project": "brush_maxwidth640"}),
            ("polygons_simplified", 40, {"project": "polygon"}),
        ]
        if args.dpr2:
            variants.append(("device_pixel_ratio_2", 40, {"dpr": 2, "repeats": 1}))
        for h, w in sizes:
            for variant, count, extra in variants:
                specs.append({**base, "repeats": args.variant_repeats, **extra,
                              "variant": variant, "height": h, "width": w, "regions": count})  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="ui-render-") as tmp:
        server = start_label_studio(Path(tmp))
        try:
            client = LabelStudio(base_url=server.url, api_key=server.token)
            projects = {
                key: client.projects.create(title=f"ui render {key}", label_config=config).id
                for key, config in CONFIGS.items()
                if any(spec["project"] == key for spec in specs)
            }
            print(f"Label Studio {server.url}, projects {projects}", flush=True)
            files: dict[str, dict[str, bytes]] = {key: {} for key in projects}
            predictions: dict[str, list] = {key: [] for key in projects}
            for n, spec in enumerate(specs):
                h, w = spec["height"], spec["width"]
                image = load_image(images[n % len(images)], h, w)
                t = time.perf_counter()
                region_map, labels = make_regions(image, spec["regions"], spec["coverage"], seed=n)
                if spec["project"] == "polygon":
                    results = polygon_results(region_map, labels)
                else:
                    results = brush_results(region_map, labels, readonly=spec["readonly"])
                spec["name"] = f"t{n:03d}-{spec['variant']}-{h}x{w}-{spec['regions']}.jpg"
                spec["coverage_measured"] = round(float((region_map > 0).mean()), 4)
                spec["payload_bytes"] = len(json.dumps(results, separators=(",", ":")))
                spec["rle_bytes"] = sum(len(r["value"].get("rle", ())) for r in results)
                spec["decoded_bytes"] = (0 if spec["project"] == "polygon"
                                         else spec["regions"] * h * w * 4)  # fmt: skip
                spec["results"] = results
                files[spec["project"]][spec["name"]] = jpeg(image)
                print(f"  {spec['name']}: coverage {spec['coverage_measured']:.2f}, "
                      f"payload {spec['payload_bytes'] / 1e3:.0f} kB "
                      f"({time.perf_counter() - t:.1f} s)", flush=True)  # fmt: skip
            for key, project in projects.items():
                ids = server.upload_files(project, files[key])
                for spec in specs:
                    if spec["project"] == key:
                        spec["task"] = ids[spec["name"]]
                        spec["project_id"] = project
                        predictions[key].append({"task": spec["task"], "result": spec.pop("results"),
                                                 "score": 0.3, "model_version": MODEL_VERSION})  # fmt: skip
                for k in range(0, len(predictions[key]), 4):
                    client.projects.import_predictions(id=project, request=predictions[key][k : k + 4])
                # Pre-labelling shows predictions of the project's model version only.
                client.projects.update(id=project, model_version=MODEL_VERSION)

            rows = run_browser(args, server, specs, chromium)
        finally:
            server.stop()

    out = {
        "settings": {
            "label_studio": "1.23.2",
            "browser": chromium_version(chromium) + " (headless, Playwright "
            + _playwright_version() + ")",
            "viewport": "1600x1000, device pixel ratio 1 (2 for the device_pixel_ratio_2 variant)",
            "repeats": args.repeats,
            "counts": args.counts,
            "sizes": args.sizes,
            "timeout_s": args.timeout,
            "coverage": "regions cover about half of the image in total (log-normal sizes)",
            "superpixels": "SLICO, n_segments = max(300, 8 x regions, 2 x regions / coverage)",
            "open": "new page per load, /projects/P/data?task=T, one logged-in context "
            "(app scripts in the HTTP cache); a warm-up load first",
            "usable": "tests/lsbrowser.py measure_usable: from the navigation start until the "
            "image is shown, the editor holds the expected regions and the panel lists them, "
            "every brush mask is attached to its canvas layer, and the main thread answers a "
            "rAF+setTimeout(0) probe within 100 ms, continuously for 0.5 s (time = start of that "
            "0.5 s window)",
            "payload_bytes": "the prediction's result list as compact JSON (what the server "
            "sends); rle_bytes = RLE bytes; decoded_bytes = regions x H x W x 4, the RGBA "
            "canvases the editor decodes",
            "load_average_start": load_start,
            "load_average_end": load_average(),
            "details": "per load: seconds from t0 (navigation start) to the task JSON, the image's "
            "load event, regions listed, regions drawn; blocking = total blocking time; "
            "long_tasks = [start, duration] of main-thread tasks >= 100 ms (long_task_count: all "
            "> 50 ms) up to 1.5 s after usable; select_click_seconds = Event Timing duration of "
            "a click on region 1 in the panel after usable (input to next paint); "
            "listed_in_panel = rows the regions panel lists (scrolled through)",
            "wall_seconds": round(time.time() - started, 1),
        },
        "machine": machine(),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    plot(args.out.with_suffix(".png"), rows, plot_subtitle(out["settings"], out["machine"]))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def _playwright_version() -> str:
    try:
        from importlib.metadata import version

        return version("playwright")
    except Exception:  # noqa: BLE001
        return "?"


def run_browser(args, server, specs: list[dict], chromium: str) -> list[dict]:
    import lsbrowser

    rows = []
    with lsbrowser.launch_browser(chromium) as browser:
        contexts: dict[int, object] = {}

        def context_for(dpr: int):
            if dpr not in contexts:
                context = lsbrowser.new_context(browser, device_scale_factor=dpr)
                page = context.new_page()
                lsbrowser.login(page, server.url, server.email, server.password)
                page.close()
                # Warm-up: the app's scripts into the HTTP cache.
                spec = next(s for s in specs if s["regions"] == min(x["regions"] for x in specs))
                warm = context.new_page()
                t0 = lsbrowser.open_task(warm, server.url, spec["project_id"], spec["task"])
                lsbrowser.measure_usable(warm, spec["regions"], args.timeout, t0=t0)
                warm.close()
                contexts[dpr] = context
            return contexts[dpr]

        skipped: set[tuple[str, int, int]] = set()
        for spec in specs:
            key = (spec["variant"], spec["height"], spec["width"])
            row = {k: spec[k] for k in ("variant", "height", "width", "regions", "coverage_measured",
                                        "payload_bytes", "rle_bytes", "decoded_bytes", "readonly",
                                        "dpr", "project")}  # fmt: skip
            row.update(seconds=[], timeout=args.timeout, timed_out=False, details=[])
            if key in skipped:
                row["skipped"] = "a smaller count timed out at this size"
                row.update(seconds_median=None, seconds_max=None)
                rows.append(row)
                continue
            context = context_for(spec["dpr"])
            for rep in range(spec["repeats"]):
                page = context.new_page()
                try:
                    load = load_average()
                    t0 = lsbrowser.open_task(page, server.url, spec["project_id"], spec["task"])
                    try:
                        timing = lsbrowser.measure_usable(page, spec["regions"], args.timeout, t0=t0)
                    except lsbrowser.UsableTimeout as exc:
                        timing = exc.timing
                    detail = timing.as_dict()
                    detail["load_average_before"] = load
                    if not timing.timed_out:
                        # After usable: any freeze left, and a real click on a region.
                        time.sleep(1.5)
                        after = lsbrowser.Usable(seconds=None, timed_out=False)
                        lsbrowser.add_timeline(page, after, t0)
                        late = [d for s, d in after.long_tasks if s > timing.seconds and d > 0.1]
                        detail["long_tasks_over_100ms_after_usable"] = len(late)
                        detail["long_tasks"] = [[round(a, 3), round(b, 3)] for a, b in after.long_tasks]
                        if spec["regions"]:
                            detail["select_click_seconds"] = round(lsbrowser.select_region(page, 1), 3)
                            detail["listed_in_panel"] = lsbrowser.count_regions(page)
                        if (args.screenshots.strip() and rep == 0 and spec["regions"] == 40
                                and spec["variant"] in ("main", "polygons_simplified")):  # fmt: skip
                            lsbrowser.screenshot(page, Path(args.screenshots) /
                                                 f"ui_render_{spec['variant']}_{spec['height']}x"
                                                 f"{spec['width']}_40.png")  # fmt: skip
                    detail.pop("last_state", None)
                    # Keep the long tasks of 100 ms and more (the JSON stays small).
                    detail["long_task_count"] = len(detail["long_tasks"])
                    detail["long_tasks"] = [x for x in detail["long_tasks"] if x[1] >= 0.1]
                    row["details"].append(detail)
                    label = (f"{spec['variant']} {spec['height']}x{spec['width']} "
                             f"{spec['regions']:>3} regions")  # fmt: skip
                    if timing.timed_out:
                        row["timed_out"] = True
                        print(f"{label}: timed out after {args.timeout:.0f} s", flush=True)
                        break
                    row["seconds"].append(round(timing.seconds, 3))
                    print(f"{label}: usable {timing.seconds:6.2f} s (task json "
                          f"{_f(timing.task_json)}, image {_f(timing.image_loaded)}, drawn "
                          f"{_f(timing.regions_drawn)}, longest task {timing.longest_task:.2f} s, "
                          f"select {detail.get('select_click_seconds')}) load {load}",
                          flush=True)  # fmt: skip
                finally:
                    page.close()
            secs = row["seconds"]
            ok = bool(secs) and not row["timed_out"]
            row["seconds_median"] = round(statistics.median(secs), 3) if ok else None
            row["seconds_max"] = round(max(secs), 3) if ok else None
            if row["timed_out"]:
                skipped.add(key)
            rows.append(row)
        for context in contexts.values():
            context.close()
    return rows


def _f(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


if __name__ == "__main__":
    main()
