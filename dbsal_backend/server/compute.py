"""Where a run's heavy work happens: in the run's own process, or on a Ray cluster.

Both offer the same two calls, used by :class:`~dbsal_backend.server.service.Service`:

- ``train(model, images, labels, recipe)`` — :func:`~dbsal_backend.engine.training.fit`;
- ``step(tasks, ...)`` — score the unlabeled pool and decide the step's queries
  (:func:`~dbsal_backend.engine.active.active_step`).

:class:`LocalCompute` (the default) fetches images ahead in threads and scores them in batches in
this process. :class:`RayCompute` (``RAY_ADDRESS`` set) scores the pool with Ray Data across the
cluster's workers (and GPUs): each worker loads the model once, downloads its images from Label
Studio and returns only scores, so nothing grows with the pool on the driver; the few kept
images are then scored again here for their maps (scoring is deterministic: the same numbers)
and the step is decided by the same :func:`~dbsal_backend.engine.active.decide`. Training runs as a Ray
task, on a GPU node when the cluster has one.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine.active import Candidate, QueryPolicy, StepResult, active_step, decide
from ..labelstudio.images import ImageFetcher, prefetch
from ..engine.scoring import Scorer
from ..engine.selection import LAYOUT_GRID, diverse_top, layout, rank_images
from ..engine.training import Recipe, fit

__all__ = ["LocalCompute", "RayCompute", "make_compute"]

log = logging.getLogger(__name__)


class LocalCompute:
    """Training and scoring in this process.

    Parameters
    ----------
    prefetch_workers : int
        Image downloads running ahead of scoring.
    score_workers : int
        Batches scored at the same time, each by its own thread with its own copy of the model
        and an equal share of torch's threads (:meth:`~dbsal_backend.engine.scoring.Scorer.
        score_stream`); 0: one per torch thread on a CPU, one on a GPU.
    """

    def __init__(self, prefetch_workers: int = 4, score_workers: int = 0) -> None:
        self.prefetch_workers = prefetch_workers
        self.score_workers = score_workers

    def train(self, model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
              recipe: Recipe, device: torch.device,
              exact: Sequence[bool] | None = None) -> nn.Module:
        fit(model, images, labels, recipe, device, exact)
        return model

    def step(self, tasks: Sequence[dict], fetcher: ImageFetcher, data_key: str, scorer: Scorer,
             superpixels_of: Callable[[np.ndarray], np.ndarray], policy: QueryPolicy,
             on_skip: Callable[[int, Exception], None], **options: Any) -> StepResult:
        pool = prefetch(tasks, lambda task: fetcher.load(task, data_key), self.prefetch_workers,
                        lambda task, exc: on_skip(task["id"], exc))
        threads = torch.get_num_threads()
        workers = self.score_workers or (threads if scorer.device.type == "cpu" else 1)
        with _torch_threads(max(1, threads // workers)):
            return active_step(((task["id"], image) for task, image in pool), scorer,
                               superpixels_of, policy, workers=workers, **options)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``n`` inside the block (process-wide: a run's process
    does one thing at a time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class RayCompute:
    """Scoring on Ray Data and training as a Ray task (see the module docstring).

    Parameters
    ----------
    address : str
        Ray's address (``RAY_ADDRESS``: ``auto``, ``ray://head:10001``, or ``local`` for a
        cluster of this machine's cores).
    worker_settings : dict
        What a worker needs to read images: Label Studio's URL and key and the image limits
        (:func:`worker_settings`). It travels inside the cluster only.
    concurrency : int, optional
        Scoring actors (default: one per worker CPU, or per GPU).
    """

    def __init__(self, address: str, worker_settings: dict[str, Any],
                 concurrency: int | None = None) -> None:
        import ray

        import dbsal_backend

        if not ray.is_initialized():
            ray.init(address=None if address == "local" else address,
                     runtime_env={"py_modules": [dbsal_backend],
                                  "env_vars": {"OMP_NUM_THREADS": "1"}},
                     include_dashboard=False, log_to_driver=False,
                     **({"num_cpus": 2} if address == "local" else {}))
        self.ray = ray
        self.worker_settings = worker_settings
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.concurrency = concurrency or max(1, self.gpus or int(resources.get("CPU", 1)))

    def train(self, model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
              recipe: Recipe, device: torch.device,
              exact: Sequence[bool] | None = None) -> nn.Module:
        remote = self.ray.remote(num_gpus=1 if self.gpus else 0)(_train_remote)
        trained = self.ray.get(remote.remote(copy.deepcopy(model).cpu(), list(images),
                                             list(labels), recipe,
                                             None if exact is None else list(exact)))
        model.load_state_dict(trained)
        return model.to(device)

    def step(self, tasks: Sequence[dict], fetcher: ImageFetcher, data_key: str, scorer: Scorer,
             superpixels_of: Callable[[np.ndarray], np.ndarray], policy: QueryPolicy,
             on_skip: Callable[[int, Exception], None], **options: Any) -> StepResult:
        pool = policy.images * policy.diversity
        # layouts are needed only to choose diverse images
        priorities, layouts = self.rank(tasks, data_key, scorer, on_skip,
                                        keep=pool if policy.diversity > 1 else 0)
        top = diverse_top(priorities, layouts, policy.images, pool)
        by_id = {task["id"]: task for task in tasks}
        candidates = []
        for key in top:
            image = fetcher.load(by_id[key], data_key)
            candidates.append(Candidate(key, image, scorer.score([image])[0]))
        return decide(candidates, priorities, superpixels_of, policy, scorer.n_classes,
                      labels_of=scorer.prelabels, **options)

    def rank(self, tasks: Sequence[dict], data_key: str, scorer: Scorer,
             on_skip: Callable[[int, Exception], None], keep: int = 0,
             ) -> tuple[dict[int, float], dict[int, np.ndarray]]:
        """``{task id: image score}`` of the pool, scored by Ray Data actors, and the predicted
        :func:`~dbsal_backend.engine.selection.layout` of the ``keep`` most uncertain (at most ``2 x
        keep`` layouts are held at a time; with ``keep`` 0 none are computed)."""
        with scorer.lock:
            model = copy.deepcopy(scorer.model).cpu()
        spec = {
            "model": self.ray.put(model), "n_classes": scorer.n_classes, "heuristic": scorer.heuristic,
            "mc_samples": scorer.mc_samples, "max_side": scorer.max_side, "seed": scorer.seed,
            "batch_size": scorer.batch_size, "class_weights": scorer.class_weights,
            "data_key": data_key, "settings": self.worker_settings, "layouts": keep > 0,
        }
        items = [{"id": int(t["id"]), "data": dict(t.get("data") or {})} for t in tasks]
        dataset = self.ray.data.from_items(items).map_batches(
            _ScoreBatch, fn_constructor_kwargs={"spec": spec}, batch_size=scorer.batch_size,
            concurrency=self.concurrency, num_gpus=1 if self.gpus else 0, batch_format="numpy")
        priorities: dict[int, float] = {}
        layouts: dict[int, np.ndarray] = {}
        for batch in dataset.iter_batches(batch_size=256, batch_format="numpy"):
            scenes = batch["layout"] if keep else [None] * len(batch["id"])
            for key, score, error, scene in zip(batch["id"], batch["score"], batch["error"],
                                                scenes):
                if error:
                    on_skip(int(key), RuntimeError(str(error)))
                else:
                    priorities[int(key)] = float(score)
                    if keep:
                        layouts[int(key)] = scene
            if len(layouts) > 2 * keep:
                kept = rank_images({key: priorities[key] for key in layouts}, keep)
                layouts = {key: layouts[key] for key in kept}
        return priorities, layouts


def _train_remote(model: nn.Module, images: list, labels: list, recipe: Recipe,
                  exact: list | None = None) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(1)
    fit(model, images, labels, recipe, device, exact)
    return {k: v.cpu() for k, v in model.state_dict().items()}


class _ScoreBatch:
    """A Ray Data actor: loads the model once, then downloads and scores batches of tasks."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import ray

        from ..labelstudio.client import LabelStudioClient

        torch.set_num_threads(1)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = spec["model"]
        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        model.to(device).eval()
        self.scorer = Scorer(model, spec["n_classes"], heuristic=spec["heuristic"],
                             mc_samples=spec["mc_samples"], max_side=spec["max_side"],
                             seed=spec["seed"], batch_size=spec["batch_size"], device=device,
                             class_weights=spec["class_weights"])
        s = spec["settings"]
        self.client = LabelStudioClient(s["label_studio_url"], s["api_key"])
        self.fetcher = ImageFetcher(s["label_studio_url"], self.client.auth_header,
                                    s["allowed_image_origins"], cache_dir=None,
                                    max_bytes=s["max_image_bytes"],
                                    max_pixels=s["max_image_pixels"], timeout=s["image_timeout"])
        self.data_key = spec["data_key"]
        self.layouts = spec["layouts"]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images, errors = [], []
        for key, data in zip(batch["id"], batch["data"]):
            try:
                images.append(self.fetcher.load({"id": int(key), "data": data}, self.data_key))
                errors.append("")
            except Exception as exc:  # noqa: BLE001 - reported per task, the batch goes on
                images.append(None)
                errors.append(f"{type(exc).__name__}: {exc}")
        good = [i for i, image in enumerate(images) if image is not None]
        n_classes = self.scorer.n_classes
        scores = np.zeros(len(images))
        out = {"id": batch["id"], "score": scores, "error": np.array(errors, dtype=object)}
        if self.layouts:
            out["layout"] = np.zeros((len(images), LAYOUT_GRID ** 2 * n_classes), np.float32)
        for i, result in zip(good, self.scorer.score([images[i] for i in good])):
            scores[i] = result.score
            if self.layouts:
                out["layout"][i] = layout(result.predicted, n_classes, LAYOUT_GRID)
        return out


def worker_settings(settings: Any) -> dict[str, Any]:
    """What a Ray worker needs from the settings to read images."""
    return {"label_studio_url": settings.label_studio_url, "api_key": settings.api_key,
            "allowed_image_origins": list(settings.allowed_image_origins),
            "max_image_bytes": settings.max_image_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "image_timeout": settings.image_timeout}


def make_compute(settings: Any) -> LocalCompute | RayCompute:
    """:class:`RayCompute` when ``RAY_ADDRESS`` is set, else :class:`LocalCompute`."""
    if settings.ray_address:
        return RayCompute(settings.ray_address, worker_settings(settings))
    return LocalCompute(settings.prefetch, settings.score_workers)
