"""How long Label Studio waits for regions made on demand: ``/predict`` for one task.

    .venv/bin/python bench/latency.py --data ../shared/data/camvid [--out bench/results/latency.json]

When "Label All Tasks" serves a task without a prediction (after the queried ones, or a task
imported after the last step), Label Studio calls ``/predict`` for it and shows the task when
the answer comes. This times that call through the real Flask app and service at the default
settings (EfficientNet-Lite0 with ImageNet weights and a trained-size head, T = 20, max side 512,
SLICO 300, at most 40 regions), for a 360x480 CamVid image and the same image upscaled to
1024x2048, served over HTTP on 127.0.0.1 by an in-memory Label Studio (``tests/fakels.py``):
*cold* (superpixels computed) and *warm* (superpixels from the cache), median of repeats, with
polygon regions (a config with PolygonLabels) and with brush layers (BrushLabels alone).
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
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from _camvid import BRUSH, CLASSES, POLYGONS  # noqa: E402
from fakels import BACKEND_URL, FakeLabelStudio  # noqa: E402

from dbsal_backend.engine.checkpoints import save_checkpoint  # noqa: E402
from dbsal_backend.engine.data import read_image  # noqa: E402
from dbsal_backend.engine.networks import build_model  # noqa: E402
from dbsal_backend.server.runtime import build_runtime, set_runtime  # noqa: E402
from dbsal_backend.server.app import init_app  # noqa: E402
from dbsal_backend.server.settings import Settings  # noqa: E402



def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/latency.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    from model import DBSALModel

    path = sorted((args.data / "train" / "images").glob("*.jpg"))[0]
    small = read_image(path)
    big = cv2.resize(small[30:270], (2048, 1024), interpolation=cv2.INTER_CUBIC)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config_name, config in (("polygons", POLYGONS), ("brush", BRUSH)):
            ls = FakeLabelStudio(n_tasks=0)
            ls.projects[1]["label_config"] = config
            tasks = {"360x480": ls.add_task(1, small, np.zeros(small.shape[:2], np.uint8)),
                     "1024x2048": ls.add_task(1, big, np.zeros(big.shape[:2], np.uint8))}
            model_dir = Path(tmp) / config_name
            settings = Settings.model_validate({
                "label_studio_url": ls.url, "label_studio_api_key": "x", "model_dir": model_dir,
                "public_url": BACKEND_URL, "device": "cpu"})
            runtime = build_runtime(settings, client_factory=ls.client, in_process=True)
            set_runtime(runtime)
            with ls.client() as client:
                runtime.service.connect(client, 1)
            torch.manual_seed(0)
            net = build_model(settings.arch, len(CLASSES), pretrained=True)
            save_checkpoint(model_dir / "project-1/model.pt", net, {
                "arch": settings.arch, "classes": CLASSES, "version": "bench", "settings": {}})
            runtime.state.update(1, checkpoint="project-1/model.pt")
            app = init_app(model_class=DBSALModel).test_client()
            for size, task in tasks.items():
                body = {"tasks": [{"id": task, "project": 1, "data": ls.tasks[task]["data"]}],
                        "project": "1.1"}
                times, regions = [], 0
                for repeat in range(args.repeats + 1):
                    if repeat == 0:  # cold: no superpixels, no image in the cache
                        for cache in (model_dir / "superpixels", model_dir / "images"):
                            for f in cache.glob("*"):
                                f.unlink()
                        runtime.service.context.superpixels._memory.clear()
                    start = time.perf_counter()
                    answer = app.post("/predict", json=body).get_json()
                    times.append(1000 * (time.perf_counter() - start))
                    regions = len(answer["results"][0]["result"])
                rows.append({"config": config_name, "size": size,
                             "cold_ms": round(times[0]),
                             "warm_ms": round(statistics.median(times[1:])),
                             "results": regions})
                print(rows[-1], flush=True)
            runtime.scheduler.shutdown(timeout=10)
            set_runtime(None)
            ls.close()
    result = {"predict": rows, "settings": "defaults (model with random head weights)",
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS="
                         f"{os.environ['OMP_NUM_THREADS']}, load {os.getloadavg()}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
