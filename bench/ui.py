"""What an annotator gets, end to end, at the default settings: a real Label Studio 1.23.2, the
backend as a gunicorn server, Debian's Chromium driven by Playwright, CamVid street images.

    .venv/bin/python bench/ui.py --data ../shared/data/camvid [--out bench/results/ui.json]
    .venv/bin/python bench/ui.py --data ../shared/data/camvid --start regions --configs polygons \
        --tasks 45 --big-tasks 40 --out bench/results/ui_start.json

For each label config (BrushLabels with PolygonLabels, as the README recommends, and BrushLabels
alone) and image size (360x480: CamVid training images; 1024x2048: CamVid images cropped to 1:2
and upscaled, labels likewise), a project with the 11 CamVid classes:

1. connect the backend (it confirms the project, sets Uncertainty sampling, queues the seed
   batch); press "Label All Tasks": which task opens (a seed task?); with ``--start regions``
   (``DBSAL_START=regions``) also the seconds until that seed task of gray class-less regions
   is usable, its regions and how many of them are listed;
2. label the seed batch (painted through the SDK with the ground truth; a start's regions each
   given the class covering most of it); webhooks start the first training run at the default
   recipe; wait for the first step;
3. press "Label All Tasks" and work through the stream as an annotator does: for each task,
   the seconds from the click (on "Label All Tasks", then on Submit) until the task is usable
   (``tests/lsbrowser.py``: image shown, every region listed and drawn, the main thread answering
   within 100 ms for 0.5 s), its regions, whether it was queried by the step or got its regions
   on demand, whether a training run was going, and its pre-labels priced against the ground
   truth (right: the region's most frequent true class); then Submit with the pre-labels as they
   are. The stream goes past the queried tasks, while the run that the submissions start is going.

Writes the JSON (per config and size: regions per queried task, seconds until usable, pre-label
accuracy, what "Label All Tasks" opened before and after the first step) and a screenshot of a
queried 360x480 task, or with ``--start regions`` of the seed task (``--screenshot``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from label_studio_sdk import LabelStudio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import lsbrowser  # noqa: E402
from _camvid import BRUSH, CLASSES, POLYGONS, VOID  # noqa: E402
from backendproc import Backend, dominant_answer, png_bytes, region_masks, wait_for  # noqa: E402
from lsserver import start_label_studio  # noqa: E402

from dbsal_backend.engine.data import read_image, read_label  # noqa: E402
from dbsal_backend.labelstudio.label_config import parse_label_config  # noqa: E402
from dbsal_backend.labelstudio.annotations import label_map_to_results  # noqa: E402



def scenes(data: Path, n: int, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` CamVid training images (and labels, void -> 255) at ``size`` (height, width)."""
    out = []
    for path in sorted((data / "train" / "images").glob("*.jpg"))[:n]:
        image = read_image(path)
        label = read_label(data / "train" / "labels" / f"{path.stem}.png").astype(np.uint8)
        label[label == VOID] = 255
        if size != image.shape[:2]:
            h, w = image.shape[:2]
            crop = int(round(w * size[0] / size[1]))  # 1:2 crop of the middle rows
            top = (h - crop) // 2
            image = cv2.resize(image[top:top + crop], size[::-1], interpolation=cv2.INTER_CUBIC)
            label = cv2.resize(label[top:top + crop], size[::-1], interpolation=cv2.INTER_NEAREST)
        out.append((image, label))
    return out


def ours(sdk: LabelStudio, task: int) -> list[dict]:
    return [p.model_dump(mode="json") for p in sdk.predictions.list(task=task)
            if p.model_version == "dbsal"]


def prelabels(prediction: dict, truth: np.ndarray) -> tuple[int, int]:
    """(right, judged): a region's pre-label is right when it is its most frequent true class."""
    right = judged = 0
    for region, mask in zip(prediction["result"], region_masks(prediction)):
        given = truth[mask & (truth != 255)]
        if given.size:
            judged += 1
            label = region["value"].get("polygonlabels") or region["value"].get("brushlabels")
            right += CLASSES[int(np.bincount(given).argmax())] == label[0]
    return right, judged


def run_project(ls, sdk, browser, config_name: str, size: tuple[int, int], data: Path,
                n_tasks: int, stream: int, tmp: Path, shot: Path | None,
                start: str = "images") -> dict:
    height, width = size
    name = f"{config_name}-{height}x{width}"
    print(f"[{name}] project of {n_tasks} tasks", flush=True)
    config = POLYGONS if config_name == "polygons" else BRUSH
    project = sdk.projects.create(title=f"dbsal UI bench {name}", label_config=config).id
    pairs = scenes(data, n_tasks, size)
    ids = ls.upload_files(project, {f"s{k:03d}.png": png_bytes(im)
                                    for k, (im, _) in enumerate(pairs)})
    truth = {ids[f"s{k:03d}.png"]: lbl for k, (_, lbl) in enumerate(pairs)}
    parsed = parse_label_config(config)
    backend = Backend(f"ui-{name}", ls, ls.token, tmp / f"models-{name}",
                      tmp / f"backend-{name}.log",
                      settings={} if start == "images" else {"DBSAL_START": start})
    backend.start()
    try:
        sdk.ml.create(url=backend.url, project=project, title="dbsal")
        backend.wait_status(project, lambda s: s["seed_batch"], "confirmation and seed batch",
                            timeout=120)
        seed = backend.status(project)["seed_batch"]
        asked = {t: ours(sdk, t)[0] for t in seed}  # read before the click: not timed
        context = lsbrowser.new_context(browser)
        page = context.new_page()
        opening = lsbrowser.start_labeling(page, ls, project)  # instructions closed too
        before, t0 = opening.task, opening.t0
        instructions = time.monotonic() - t0
        print(f"[{name}] before the first step, Label All Tasks opened {before} "
              f"(seed: {before in seed})", flush=True)
        start_task = None
        if any(p["result"] for p in asked.values()):  # a start of regions
            results = asked[before]["result"] if before in asked else []
            usable = lsbrowser.measure_usable(page, len(results), timeout=180, t0=t0)
            start_task = {"task": before, "regions": len(results),
                          "listed": lsbrowser.count_regions(page),
                          "class_less": all(not (r["value"].get("polygonlabels")
                                                 or r["value"].get("brushlabels"))
                                            for r in results),
                          "seconds": round(usable.seconds, 2),
                          "instructions_closed": round(instructions, 2)}
            print(f"[{name}] the seed task: {start_task}", flush=True)
            if shot is not None:  # the start's task, not a queried one
                lsbrowser.screenshot(page, shot)
                shot = None
        started = time.perf_counter()
        for task in seed:
            answer = (dominant_answer(asked[task], truth[task], CLASSES) if asked[task]["result"]
                      else label_map_to_results(truth[task], parsed))
            sdk.annotations.create(id=task, result=answer)
        status = backend.wait_status(project, lambda s: s["al_step"] >= 1
                                     and s["training_state"] == "idle", "the first step",
                                     timeout=3600)
        first_step_seconds = time.perf_counter() - started
        queried = {t for t in truth if t not in seed and ours(sdk, t) and ours(sdk, t)[0]["result"]}
        least = min(queried, key=lambda t: (ours(sdk, t)[0]["score"], t))

        opening = lsbrowser.start_labeling(page, ls, project, log_in=False)
        task, t0 = opening.task, opening.t0
        after = task
        loads = []
        for k in range(stream):
            running = (backend.status(project) or {}).get("training_state")
            found = wait_for(lambda: ours(sdk, task), 120, f"a prediction of task {task}")
            prediction = found[0]
            usable = lsbrowser.measure_usable(page, len(prediction["result"]), timeout=180,
                                              t0=t0)
            if shot is not None and k == 0:
                lsbrowser.screenshot(page, shot)
            right, judged = prelabels(prediction, truth[task])
            loads.append({"task": task, "queried": task in queried,
                          "regions": len(prediction["result"]),
                          "listed": lsbrowser.count_regions(page),
                          "kinds": sorted({r["type"] for r in prediction["result"]}),
                          "seconds": round(usable.seconds, 2),
                          "task_json": usable.task_json and round(usable.task_json, 2),
                          "run_going": running in ("queued", "running"),
                          "prelabels_right": right, "prelabels_judged": judged,
                          "task_score": prediction["score"]})
            print(f"[{name}] {loads[-1]}", flush=True)
            if k == stream - 1:
                break
            t0 = time.monotonic()
            lsbrowser.submit(page)
            task = lsbrowser.wait_next_task(page, task)
        context.close()
        shown = [x for x in loads if x["queried"]]
        seconds = [x["seconds"] for x in loads]
        right = sum(x["prelabels_right"] for x in shown)
        judged = sum(x["prelabels_judged"] for x in shown)
        return {
            "config": config_name, "size": f"{height}x{width}", "tasks": n_tasks,
            "start": start, "seed_batch": len(seed), "seed_task": start_task,
            "queried_tasks": len(queried),
            "regions_per_queried_task_median": statistics.median(x["regions"] for x in shown)
            if shown else None,
            "seconds_until_usable_median": round(statistics.median(seconds), 2),
            "seconds_until_usable_max": round(max(seconds), 2),
            "prelabel_accuracy": right / judged if judged else None,
            "every_task_had_regions": all(x["regions"] > 0 for x in loads),
            "label_all_tasks": {
                "before_first_step": {"task": before, "is_seed_task": before in seed},
                "after_first_step": {"task": after, "least_confident_queried": least,
                                     "is_least_confident_queried": after == least}},
            "first_step_seconds": round(first_step_seconds, 1),
            "model_version": status["model_version"],
            "stream": loads,
        }
    finally:
        backend.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CamVid root")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ui.json")
    parser.add_argument("--screenshot", type=Path, default=None, help="default: "
                        "docs/queried-task.png (a queried task), with --start regions "
                        "docs/start-task.png (a seed task of gray regions)")
    parser.add_argument("--tasks", type=int, default=30, help="tasks per 360x480 project")
    parser.add_argument("--big-tasks", type=int, default=16, help="tasks per 1024x2048 project")
    parser.add_argument("--stream", type=int, default=14, help="tasks worked through")
    parser.add_argument("--configs", nargs="+", default=["polygons", "brush"])
    parser.add_argument("--sizes", nargs="+", default=["360x480", "1024x2048"])
    parser.add_argument("--start", choices=["images", "regions"], default="images",
                        help="DBSAL_START of the backend (default: its default)")
    args = parser.parse_args(argv)
    if args.screenshot is None:
        args.screenshot = ROOT / ("docs/start-task.png" if args.start == "regions"
                                  else "docs/queried-task.png")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    load = os.getloadavg()
    projects = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ls = start_label_studio(tmp / "ls")
        try:
            sdk = LabelStudio(base_url=ls.url, api_key=ls.token)
            with lsbrowser.launch_browser() as browser:
                for config in args.configs:
                    for size, n in (((360, 480), args.tasks), ((1024, 2048), args.big_tasks)):
                        if f"{size[0]}x{size[1]}" not in args.sizes:
                            continue
                        shot = args.screenshot if (config, size) == ("polygons", (360, 480)) \
                            else None
                        seeds = 30 if args.start == "regions" else 10
                        projects.append(run_project(ls, sdk, browser, config, size, args.data,
                                                    n, min(args.stream, n - seeds), tmp, shot,
                                                    args.start))
        finally:
            ls.stop()
    settings = ("backend defaults (DBSAL_* unset)" if args.start == "images"
                else f"backend defaults but DBSAL_START={args.start}")
    result = {"projects": projects, "settings": settings,
              "limits": {"360x480": 3.0, "1024x2048": 6.0, "regions_median": 40},
              "usable_from": "the click on 'Label All Tasks' (first task) or on Submit (the "
                             "next ones), in the app already open, as an annotator works",
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS="
                         f"{os.environ['OMP_NUM_THREADS']}",
              "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
              "seconds": round(time.perf_counter() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for p in projects:
        print({k: v for k, v in p.items() if k != "stream"})
    return result


if __name__ == "__main__":
    main()
