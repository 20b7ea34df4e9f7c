"""What an annotator gets, end to end, at the default settings: a real Label Studio 1.23.2, the
backend as a gunicorn server, Debian's Chromium driven by Playwright, CamVid street images.

    .venv/bin/python bench/ui.py --data ../shared/data/camvid [--out bench/results/ui.json]

For each image size (360x480: CamVid training images; 1024x2048: CamVid images cropped to 1:2
and upscaled, labels likewise) a project with the 11 CamVid classes:

1. connect the backend (it confirms the project, sets Uncertainty sampling, queues the seed
   batch); press "Label All Tasks" in the browser: which task opens (a seed task?);
2. label the seed batch (painted through the SDK with the ground truth); webhooks start the
   first training run at the default recipe; wait for the first step;
3. press "Label All Tasks": which task opens (the least confident queried one?); open every
   queried task fresh and measure the seconds until it is usable (``tests/lsbrowser.py``:
   image shown, every region listed and drawn, the main thread answering within 100 ms for
   0.5 s), count its regions in the regions panel, and price its pre-labels against the ground
   truth (a region's pre-label is right when it is the region's most frequent true class);
4. answer every queried task (ground truth inside its regions) and, while the run those
   answers start is going, press "Label All Tasks" again: does the annotator get a task with
   regions (computed on demand with the previous model)?

Writes the JSON and a screenshot of a queried 360x480 task (``--screenshot``).
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

import lsbrowser  # noqa: E402
from backendproc import Backend, png_bytes, wait_for  # noqa: E402
from lsserver import start_label_studio  # noqa: E402

from dbsal_backend.data import read_image, read_label  # noqa: E402
from dbsal_backend.ls_annotations import label_map_to_results  # noqa: E402
from dbsal_backend.label_config import parse_label_config  # noqa: E402
from dbsal_backend.rle import rle_to_mask  # noqa: E402

CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist"]  # fmt: skip
CONFIG = ('<View><Image name="image" value="$image" zoom="true"/>'
          '<BrushLabels name="tag" toName="image">'
          + "".join(f'<Label value="{c}"/>' for c in CLASSES) + "</BrushLabels></View>")
VOID = 11


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
    for region in prediction["result"]:
        mask = rle_to_mask(region["value"]["rle"], region["original_height"],
                           region["original_width"])
        given = truth[mask & (truth != 255)]
        if given.size:
            judged += 1
            right += CLASSES[int(np.bincount(given).argmax())] == region["value"]["brushlabels"][0]
    return right, judged


def run_size(ls, sdk, browser, size, data, n_tasks, tmp: Path, shot: Path | None) -> dict:
    height, width = size
    name = f"{height}x{width}"
    print(f"[{name}] project of {n_tasks} tasks", flush=True)
    project = sdk.projects.create(title=f"dbsal UI bench {name}", label_config=CONFIG).id
    data_pairs = scenes(data, n_tasks, size)
    files = {f"s{k:03d}.png": png_bytes(im) for k, (im, _) in enumerate(data_pairs)}
    ids = ls.upload_files(project, files)
    truth = {ids[f"s{k:03d}.png"]: lbl for k, (_, lbl) in enumerate(data_pairs)}
    config = parse_label_config(CONFIG)

    backend = Backend(f"ui-{name}", ls, ls.token, tmp / f"models-{name}",
                      tmp / f"backend-{name}.log", settings={})  # the defaults
    backend.start()
    try:
        sdk.ml.create(url=backend.url, project=project, title="dbsal")
        backend.wait_status(project, lambda s: s["seed_batch"], "confirmation and seed batch",
                            timeout=120)
        seed = backend.status(project)["seed_batch"]
        context = lsbrowser.new_context(browser)
        page = context.new_page()
        lsbrowser.login(page, ls.url, ls.email, ls.password)
        lsbrowser.open_data_manager(page, ls.url, project)
        before, _ = lsbrowser.label_all_tasks(page)
        print(f"[{name}] Label All Tasks before the first step opened {before} "
              f"(seed: {before in seed})", flush=True)
        t_seed = time.perf_counter()
        for task in seed:
            sdk.annotations.create(id=task, result=label_map_to_results(truth[task], config))
        status = backend.wait_status(project, lambda s: s["al_step"] >= 1
                                     and s["training_state"] == "idle", "the first step",
                                     timeout=3600)
        first_step_seconds = time.perf_counter() - t_seed
        queried = {t: p[0] for t in truth if t not in seed
                   for p in [ours(sdk, t)] if p and p[0]["result"]}
        least = min(queried, key=lambda t: (queried[t]["score"], t))
        lsbrowser.open_data_manager(page, ls.url, project)
        after, _ = lsbrowser.label_all_tasks(page)
        print(f"[{name}] after the first step it opened {after} (least confident queried: "
              f"{least})", flush=True)

        loads = []
        for task, prediction in sorted(queried.items(), key=lambda kv: kv[1]["score"]):
            tab = context.new_page()
            t0 = lsbrowser.open_task(tab, ls.url, project, task)
            usable = lsbrowser.measure_usable(tab, len(prediction["result"]), timeout=180,
                                              t0=t0)
            listed = lsbrowser.count_regions(tab)
            if shot is not None and not loads:
                lsbrowser.screenshot(tab, shot)
            right, judged = prelabels(prediction, truth[task])
            loads.append({"task": task, "regions": len(prediction["result"]),
                          "listed": listed, "seconds": round(usable.seconds, 2),
                          "blocking": round(usable.blocking, 2), "prelabels_right": right,
                          "prelabels_judged": judged, "task_score": prediction["score"]})
            print(f"[{name}] task {task}: {loads[-1]}", flush=True)
            tab.close()

        # answer every queried task; while the run they start is going, ask for the next task
        for task, prediction in queried.items():
            inside = np.logical_or.reduce([
                rle_to_mask(r["value"]["rle"], height, width) for r in prediction["result"]])
            sdk.annotations.create(id=task, result=label_map_to_results(truth[task], config,
                                                                        only=inside))
        wait_for(lambda: (backend.status(project) or {}).get("training_state") == "running",
                 600, "the second run to start", backend.log_tail)
        lsbrowser.open_data_manager(page, ls.url, project)
        during, t0 = lsbrowser.label_all_tasks(page)
        found = wait_for(lambda: ours(sdk, during), 120, "a prediction of the served task")
        running = backend.status(project)["training_state"]
        regions_during = len(found[0]["result"])
        usable_during = lsbrowser.measure_usable(page, regions_during, timeout=180, t0=t0)
        context.close()
        seconds = [x["seconds"] for x in loads]
        right = sum(x["prelabels_right"] for x in loads)
        judged = sum(x["prelabels_judged"] for x in loads)
        return {
            "size": name, "tasks": n_tasks, "seed_batch": len(seed),
            "queried_tasks": len(loads),
            "regions_per_queried_task_median": statistics.median(x["regions"] for x in loads),
            "regions_per_queried_task": [x["regions"] for x in loads],
            "seconds_until_usable_median": round(statistics.median(seconds), 2),
            "seconds_until_usable_max": round(max(seconds), 2),
            "prelabel_accuracy": right / judged if judged else None,
            "label_all_tasks": {
                "before_first_step": {"task": before, "is_seed_task": before in seed},
                "after_first_step": {"task": after, "least_confident_queried": least,
                                     "is_least_confident_queried": after == least},
                "while_retraining": {"task": during, "regions": regions_during,
                                     "training_state": running,
                                     "seconds_until_usable": round(usable_during.seconds, 2)},
            },
            "first_step_seconds": round(first_step_seconds, 1),
            "model_version": status["model_version"],
            "loads": loads,
        }
    finally:
        backend.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CamVid root")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ui.json")
    parser.add_argument("--screenshot", type=Path, default=ROOT / "docs/queried-task.png")
    parser.add_argument("--tasks", type=int, default=30, help="tasks per project (360x480)")
    parser.add_argument("--big-tasks", type=int, default=16, help="tasks of 1024x2048")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ls = start_label_studio(tmp / "ls")
        try:
            sdk = LabelStudio(base_url=ls.url, api_key=ls.token)
            with lsbrowser.launch_browser() as browser:
                sizes = [run_size(ls, sdk, browser, (360, 480), args.data, args.tasks, tmp,
                                  args.screenshot),
                         run_size(ls, sdk, browser, (1024, 2048), args.data, args.big_tasks, tmp,
                                  None)]
        finally:
            ls.stop()
    result = {"sizes": sizes, "settings": "backend defaults (DBSAL_* unset)",
              "limits": {"360x480": 3.0, "1024x2048": 6.0, "regions_median": 40},
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS="
                         f"{os.environ['OMP_NUM_THREADS']}",
              "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
              "seconds": round(time.perf_counter() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for size in sizes:
        print({k: v for k, v in size.items() if k not in ("loads",)})
    return result


if __name__ == "__main__":
    main()
