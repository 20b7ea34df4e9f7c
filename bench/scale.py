"""Scoring the pool at scale: a real Label Studio holding 100, 1,000 and 10,000 tasks.

    .venv/bin/python bench/scale.py [--sizes 100 1000 10000] [--out bench/results/scale.json]

Tasks are synthetic 240x320 street-like JPEGs, served by a small image server on 127.0.0.1 (an
allowed image origin) and imported into Label Studio as task data. For each size, in a fresh
process (so that peak memory is that size's own):

- **ours**: the backend's step over the whole pool — the task listing streamed from Label Studio,
  images fetched ahead in threads (``DBSAL_PREFETCH``), scored in batches
  (``DBSAL_SCORE_BATCH_SIZE``), ``DBSAL_SCORE_WORKERS`` batches at once, only the kept images'
  maps held, then the superpixels and regions of the queried images
  (:class:`dbsal_backend.server.compute.LocalCompute`);
- **baseline**: the backend's path before this change, measured in the same run: the listing
  read whole, one image fetched at a time and scored alone as ``Service._score`` did (contiguous
  tensors, the head's context branch computed in every MC pass, dropout masks drawn for every
  image), on the first ``--baseline-tasks`` tasks; its cost per image is the listing's time
  divided by the pool's tasks plus the scoring's time divided by the tasks scored;
- ``same_scores``: both give the same image scores (within 1e-5) on the baseline's tasks.

The clock starts once the model is built (in a run it has just been trained) and stops when
the step's result is there: ours includes making the scorer (its inference copies) and the
queried images' superpixels and regions, which the baseline does not do.

Threads: ours with one torch thread per core, as a run's child process has them
(``DBSAL_RUN_THREADS=0``), and also with one thread for pools up to ``--one-thread-max``; the
baseline with one, as the web process ran it (``OMP_NUM_THREADS=1``).

Then, at ``--ray-tasks`` tasks, the same step on a local Ray cluster (``ray.init(num_cpus=2)``):
``same_queries`` when it queries the same tasks with the same regions as in-process.
Model: EfficientNet-Lite0 + LR-ASPP with ImageNet weights (the default), T = 20, max side 512.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
          + "".join(f'<Label value="c{i}"/>' for i in range(11)) + "</BrushLabels></View>")
HEIGHT, WIDTH = 240, 320


def synthetic_jpeg(k: int) -> bytes:
    """A street-like scene: sky, buildings, road, a few cars, noise; different for each k."""
    from PIL import Image

    rng = np.random.default_rng(k)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    horizon = int(rng.integers(120, 200))
    image[:horizon] = rng.integers(150, 230, 3)
    for _ in range(int(rng.integers(3, 7))):
        left, w = int(rng.integers(0, WIDTH - 60)), int(rng.integers(40, 160))
        top = int(rng.integers(30, horizon))
        image[top:horizon + 40, left:left + w] = rng.integers(40, 200, 3)
    image[horizon + 40:] = rng.integers(60, 110)
    for _ in range(int(rng.integers(1, 5))):
        left, top = int(rng.integers(0, WIDTH - 80)), int(rng.integers(horizon, HEIGHT - 40))
        image[top:top + 35, left:left + 70] = rng.integers(0, 255, 3)
    image = np.clip(image.astype(int) + rng.integers(-12, 12, image.shape), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class ImageServer:
    """Serves ``/img/<k>.jpg`` (synthetic) on 127.0.0.1."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                k = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                body = synthetic_jpeg(k)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def make_project(ls_url: str, token: str, images_url: str, n: int) -> int:
    from label_studio_sdk import LabelStudio

    sdk = LabelStudio(base_url=ls_url, api_key=token, timeout=600)
    project = sdk.projects.create(title=f"scale {n}", label_config=CONFIG).id
    for start in range(0, n, 2000):
        sdk.projects.import_tasks(id=project, request=[
            {"data": {"image": f"{images_url}/img/{k}.jpg"}}
            for k in range(start, min(n, start + 2000))])
    return project


def settings_for(ls_url: str, token: str, images_url: str, model_dir: Path):
    from dbsal_backend.server.settings import Settings

    return Settings.model_validate({
        "label_studio_url": ls_url, "label_studio_api_key": token, "model_dir": model_dir,
        "allowed_image_origins": [images_url], "device": "cpu"})


def build_model(settings):
    """The default model, seeded (ImageNet encoder, random head)."""
    import torch

    from dbsal_backend.engine.networks import build_model as build

    torch.manual_seed(0)
    return build(settings.arch, 11, pretrained=True).eval()


def build_scorer(settings, model=None):
    """A Scorer at the default settings (of the default model unless ``model`` is given)."""
    from dbsal_backend.engine.scoring import Scorer

    model = build_model(settings) if model is None else model
    return Scorer(model, 11, heuristic=settings.uncertainty,
                  mc_samples=settings.mc_samples, max_side=settings.max_side, seed=settings.seed,
                  batch_size=settings.score_batch_size)


def old_score(model, image, settings) -> float:
    """One image as ``Service._score`` scored it before: downscale, one contiguous tensor,
    MC dropout with the head's context in every pass and fresh masks, mean, normalise."""
    import torch

    from dbsal_backend.engine import uncertainty
    from dbsal_backend.engine.data import fit_side
    from dbsal_backend.engine.scoring import max_uncertainty

    uncertainty._MASK_CACHE.clear()  # the masks were drawn for every image
    small = fit_side(image, settings.max_side)
    x = torch.as_tensor(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float().div(255)
    stats = uncertainty.mc_dropout(model, x, n_samples=settings.mc_samples, mode="head",
                                   seed=settings.seed)
    u = uncertainty.pixel_uncertainty(stats, settings.uncertainty)
    u = u.div(max_uncertainty(settings.uncertainty, 11)).clamp(0.0, 1.0)
    return float(u[0].float().numpy().mean(dtype=np.float64))


def _old_head(model):
    """The model as the backend ran it before: the head's context branch in every MC pass."""
    from torch import nn

    from dbsal_backend.engine.networks import SegmenterFeatures

    class OldHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.n_classes = model.n_classes

        def encode(self, x):
            low, high = self.model.encoder(x)
            return low, high, (int(x.shape[-2]), int(x.shape[-1]))

        def decode(self, features):
            low, high, size = features
            head = self.model.decoder
            return head(SegmenterFeatures(low, head.context(low, high), size))

    return OldHead()


def measure(kind: str, ls_url: str, token: str, images_url: str, project: int, limit: int | None,
            threads: int, queue: multiprocessing.Queue) -> None:
    """One measurement in a fresh process with ``threads`` torch threads: scores, seconds, peak
    RSS."""
    import resource

    import torch

    from dbsal_backend.engine.active import QueryPolicy
    from dbsal_backend.server.compute import LocalCompute
    from dbsal_backend.labelstudio.images import ImageFetcher
    from dbsal_backend.labelstudio.client import LabelStudioClient
    from dbsal_backend.engine.superpixels import SlicParams, SuperpixelCache

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(ls_url, token, images_url, Path(tmp))
        client = LabelStudioClient(ls_url, token)
        fetcher = ImageFetcher(ls_url, client.auth_header, settings.allowed_image_origins,
                               cache_dir=None)
        cache = SuperpixelCache(Path(tmp) / "sp", SlicParams())
        model = build_model(settings)  # in a run: the model just trained
        start = time.perf_counter()
        if kind == "ours":
            scorer = build_scorer(settings, model)
            tasks = client.tasks(project)  # streamed, page by page
            result = LocalCompute(settings.prefetch, settings.score_workers).step(
                tasks, fetcher, "image", scorer, cache.get, QueryPolicy(), lambda t, e: None)
            scores = result.priorities
            seconds = time.perf_counter() - start
        else:
            model = _old_head(model)
            listing = list(client.tasks(project))  # the listing read whole
            listed = time.perf_counter() - start
            scores = {}
            for task in listing[:limit]:
                scores[task["id"]] = old_score(model, fetcher.load(task, "image"), settings)
            # per image of the pool: the listing once per pool, the scoring once per task
            seconds = listed * len(scores) / len(listing) + (time.perf_counter() - start - listed)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put({"scores": scores, "seconds": seconds, "peak_rss_mb": peak})


def run(kind, *args, threads: int = 1) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=measure, args=(kind, *args, threads, queue))
    process.start()
    out = queue.get()
    process.join()
    return out


def ray_step(ls_url: str, token: str, images_url: str, project: int) -> dict:
    """The same step in-process and on a local Ray cluster."""
    from dbsal_backend.engine.active import QueryPolicy
    from dbsal_backend.server.compute import LocalCompute, RayCompute, worker_settings
    from dbsal_backend.labelstudio.images import ImageFetcher
    from dbsal_backend.labelstudio.client import LabelStudioClient
    from dbsal_backend.engine.superpixels import SlicParams, SuperpixelCache

    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(ls_url, token, images_url, Path(tmp))
        client = LabelStudioClient(ls_url, token)
        fetcher = ImageFetcher(ls_url, client.auth_header, settings.allowed_image_origins)
        cache = SuperpixelCache(Path(tmp) / "sp", SlicParams())
        tasks = list(client.tasks(project))
        scorer = build_scorer(settings)
        here = LocalCompute(settings.prefetch).step(tasks, fetcher, "image", scorer, cache.get,
                                                    QueryPolicy(), lambda t, e: None)
        start = time.perf_counter()
        there = RayCompute("local", worker_settings(settings)).step(
            tasks, fetcher, "image", scorer, cache.get, QueryPolicy(), lambda t, e: None)
        seconds = time.perf_counter() - start
        def regions(result):  # confidences to float rounding (batches differ on Ray)
            return [(q.key, [(r.superpixels, r.label, r.pixels, round(r.confidence, 4))
                             for r in q.regions]) for q in result.queries]

        same = regions(here) == regions(there)
        return {"same_queries": bool(same), "tasks": len(tasks), "seconds": round(seconds, 1),
                "max_score_difference": max(abs(here.priorities[k] - there.priorities[k])
                                            for k in here.priorities)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--baseline-tasks", type=int, default=100)
    parser.add_argument("--ray-tasks", type=int, default=100)
    parser.add_argument("--one-thread-max", type=int, default=1000,
                        help="also time ours on one thread for pools up to this size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/scale.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as a run's child process has it
    run_threads = os.cpu_count() or 1
    from lsserver import start_label_studio

    images = ImageServer()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ls = start_label_studio(Path(tmp) / "ls")
        try:
            rows = []
            for n in args.sizes:
                project = make_project(ls.url, ls.token, images.url, n)
                # ours as a run does it (DBSAL_RUN_THREADS=0: one thread per core); the
                # baseline as the web process did (OMP_NUM_THREADS=1); ours on one thread too.
                ours = run("ours", ls.url, ls.token, images.url, project, None,
                           threads=run_threads)
                base = run("baseline", ls.url, ls.token, images.url, project,
                           min(n, args.baseline_tasks))
                one = run("ours", ls.url, ls.token, images.url, project, None) \
                    if n <= args.one_thread_max else None
                diff = max(abs(ours["scores"][k] - s) for k, s in base["scores"].items())
                rows.append({
                    "tasks": n,
                    "ours_ms_per_image": round(1000 * ours["seconds"] / len(ours["scores"]), 1),
                    "baseline_ms_per_image": round(1000 * base["seconds"] / len(base["scores"]),
                                                   1),
                    "peak_rss_mb": round(ours["peak_rss_mb"]),
                    "ours_1_thread_ms_per_image": None if one is None else round(
                        1000 * one["seconds"] / len(one["scores"]), 1),
                    "baseline_peak_rss_mb": round(base["peak_rss_mb"]),
                    "baseline_tasks": len(base["scores"]),
                    "same_scores": bool(diff < 1e-5), "max_score_difference": diff})
                print(rows[-1], flush=True)
            ray = ray_step(ls.url, ls.token, images.url,
                           make_project(ls.url, ls.token, images.url, args.ray_tasks))
            print(ray, flush=True)
        finally:
            ls.stop()
    from dbsal_backend.server.settings import Settings

    defaults = Settings.model_validate({})
    result = {"sizes": rows, "ray": ray, "settings": {
        "image_size": [HEIGHT, WIDTH], "arch": defaults.arch, "mc_samples": defaults.mc_samples,
        "max_side": defaults.max_side, "score_batch_size": defaults.score_batch_size,
        "prefetch": defaults.prefetch, "score_workers": defaults.score_workers or run_threads,
        "clock": "from a built model to the step's result (ours: scorer, scoring, regions)",
        "ours_threads": run_threads, "baseline_threads": 1,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "seconds": round(time.perf_counter() - started, 1)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
