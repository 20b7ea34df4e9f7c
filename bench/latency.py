"""Backend latency: ``/predict`` for one task, and one full active-learning step over 200 tasks.

    .venv/bin/python bench/latency.py --data ../shared/data/camvid [--out bench/results/latency.json]

The backend (the real Flask app from ``_wsgi.py`` and the real ``Service``) runs in-process; Label
Studio is replaced by an in-memory client that serves CamVid images from disk, so the numbers are
the backend's own compute (MC dropout, superpixels, split, RLE, JSON), without network transfer.
The 1024x2048 task is a CamVid image upscaled to Cityscapes size. Each ``/predict`` is timed cold
(superpixels computed) and warm (superpixels from the cache), median of repeats.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbsal_backend.data import read_image, read_label  # noqa: E402
from dbsal_backend.label_config import parse_label_config  # noqa: E402
from dbsal_backend.ls_annotations import label_map_to_results  # noqa: E402
from dbsal_backend.settings import Settings  # noqa: E402

CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist"]
CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
          + "".join(f'<Label value="{c}"/>' for c in CLASSES) + "</BrushLabels></View>")


class DiskClient:
    """In-memory Label Studio stand-in: tasks over image files, predictions kept in a dict."""

    def __init__(self, images: dict[int, np.ndarray]):
        self.images = images
        self.tasks = {t: {"id": t, "data": {"image": f"/data/upload/{t}.png"}, "annotations": []}
                      for t in images}
        self.predictions: dict[int, dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def close(self):
        pass

    def list_tasks(self, project, include=None):
        yield from ({"id": t["id"], "data": t["data"]} for t in self.tasks.values())

    def annotations(self, project):
        return {t: task["annotations"][-1] for t, task in self.tasks.items() if task.get("annotations")}

    def load_image(self, task, key):
        return self.images[task["id"]]

    def delete_predictions(self, project, model_version=None):
        self.predictions.clear()

    def push_predictions(self, project, predictions):
        json.dumps(predictions)  # what the SDK would serialise
        self.predictions.update({p["task"]: p for p in predictions})
        return len(predictions)

    def project_model_version(self, project):
        return "dbsal"

    def set_project_model_version(self, project, version):
        pass

    def ensure_queue_view(self, project, title):
        return 1


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CamVid root")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--seed-images", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/results/latency.json")
    args = p.parse_args(argv)

    files = sorted((Path(args.data) / "train" / "images").glob("*"))[: args.tasks]
    if len(files) < args.tasks:
        raise SystemExit(f"need {args.tasks} images under {args.data}/train/images")
    images = {i + 1: read_image(f) for i, f in enumerate(files)}
    truth = {i + 1: read_label(Path(args.data) / "train" / "labels" / (f.stem + ".png"))
             for i, f in enumerate(files)}
    big = cv2.resize(images[1], (2048, 1024), interpolation=cv2.INTER_LINEAR)

    workdir = Path(tempfile.mkdtemp(prefix="dbsal-latency-"))
    settings = dataclasses.replace(Settings.from_env({}), model_dir=workdir / "models",
                                   epochs=args.epochs, initial_batch=args.seed_images)
    client = DiskClient(images)

    import model as backend  # the real wiring, with the service over the in-memory client
    from dbsal_backend.service import Service

    backend.service_factory = lambda s, state: Service(s, state, lambda: client)
    backend.set_runtime(backend.build_runtime(settings))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import _wsgi

    app = _wsgi.app.test_client()
    r = app.post("/setup", json={"project": "1.1700000000", "schema": CONFIG})
    assert r.status_code == 200, r.get_data(as_text=True)
    runtime = backend.get_runtime()
    runtime.scheduler.wait_idle(1, timeout=600)
    svc = runtime.service

    # the seed batch, labeled from ground truth
    t0 = time.perf_counter()
    seed = svc.run(1)["seed_batch"]
    seed_s = time.perf_counter() - t0
    for tid in seed:
        client.tasks[tid]["annotations"] = [{"id": tid, "result": label_map_to_results(truth[tid], parse_label_config(CONFIG)),
                                             "was_cancelled": False,
                                             "created_at": "2026-11-25T00:00:00Z"}]

    # one full run: training on the seed set + the AL step over the other tasks
    timings = {}
    original_step = svc._step

    def timed_step(*a, **k):
        t = time.perf_counter()
        out = original_step(*a, **k)
        timings["step_s"] = time.perf_counter() - t
        return out

    svc._step = timed_step
    t0 = time.perf_counter()
    result = svc.run(1)
    run_s = time.perf_counter() - t0
    queried = result["queried"]
    selected = [len(v) for v in queried.values()]

    def predict_ms(task: dict) -> tuple[float, float, int]:
        body = {"tasks": [task], "project": "1.1700000000", "label_config": CONFIG}
        times = []
        for _ in range(args.repeats + 1):
            t = time.perf_counter()
            r = app.post("/predict", json=body)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.get_data(as_text=True)
        regions = len(r.get_json()["results"][0]["result"])
        return times[0], statistics.median(times[1:]), regions

    unqueried = next(t for t in images if t not in queried and t not in seed)
    small_cold, small_warm, small_regions = predict_ms(client.tasks[unqueried])
    images[10_000] = big
    client.tasks[10_000] = {"id": 10_000, "data": {"image": "/data/upload/big.png"}}
    big_cold, big_warm, big_regions = predict_ms(client.tasks[10_000])

    out = {
        "predict_360x480": {"cold_ms": round(small_cold, 1), "warm_ms": round(small_warm, 1),
                            "regions": small_regions},
        "predict_1024x2048": {"cold_ms": round(big_cold, 1), "warm_ms": round(big_warm, 1),
                              "regions": big_regions},
        "al_step_200_tasks": {
            "tasks": args.tasks, "scored": result["scored"],
            "step_s": round(timings["step_s"], 1),
            "run_s_including_training": round(run_s, 1),
            "training_s": round(run_s - timings["step_s"], 1),
            "queried_images": len(queried),
            "regions_per_queried_image": selected,
        },
        "seed_batch_s": round(seed_s, 1),
        "settings": {"arch": settings.arch, "mc_samples": settings.mc_samples,
                     "max_side": settings.max_side, "n_segments": settings.n_segments,
                     "epochs": settings.epochs, "seed_images": args.seed_images,
                     "device": str(svc.device), "torch_threads": torch.get_num_threads()},
        "note": "Label Studio replaced by an in-memory client: backend compute only, no HTTP "
                "transfer of images or predictions.",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
