"""The active-learning loop against a Label Studio project.

:class:`Service` wires the engine (superpixels, uncertainty, selection, networks, training) to a
Label Studio server (``ls_client``) and the state store. Its three entry points are what the
thin server layer (``model.py``) calls:

- :meth:`Service.run` — one training run and the active-learning step after it (the training
  scheduler's ``run_fn``; never called from a request);
- :meth:`Service.predict` — predictions for the tasks Label Studio asks about, computed on demand
  with the current model and cached superpixels;
- :meth:`Service.on_setup` — a project connected: before any model exists, a random seed batch of
  whole images is put first in the labeling queue (in the background).

A run: fetch every task over the SDK (the webhook payload is never trusted), take the newest
non-cancelled annotation per task, decode its brush RLE into a label map (pixels no brush covers
are ignored: whole-image seed labels and superpixel answers alike), train (fine-tuning a copy of
the serving model, so ``/predict`` keeps answering during training), save the checkpoint
atomically and swap it in. Then the step: score every unlabeled task by MC dropout (one image at a
time; only the K best maps are kept), split the superpixels of the top K by natural breaks, and
push one prediction per unlabeled task: brush regions for the queried superpixels of the top K,
an empty result elsewhere, each scored by the image's normalised uncertainty (its queue
priority). The backend's older predictions are deleted first, the project's model version is
set to the backend title so the Data Manager sorts by these scores, and the "DBSAL queue" tab is
created or updated.
"""

from __future__ import annotations

import copy
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .data import SegmentationDataset
from .label_config import LabelConfig, parse_label_config
from .ls_annotations import AnnotationError, annotation_to_label_map
from .ls_client import LabelStudioError
from .ls_predictions import superpixel_prediction
from .networks import build_model, pick_device
from .selection import Budget, split_superpixels, superpixel_scores
from .settings import Settings
from .state import StateStore
from .superpixels import SlicParams, SuperpixelCache
from .training import CheckpointMismatch, TrainConfig, load_checkpoint, save_checkpoint, train
from .uncertainty import image_scores, mc_dropout, pixel_uncertainty

log = logging.getLogger(__name__)

#: Title of the Data Manager tab that holds the labeling queue.
QUEUE_VIEW_TITLE = "DBSAL queue"


def max_uncertainty(method: str, n_classes: int) -> float:
    """Largest value a pixel heuristic can take, to normalise scores into ``[0, 1]``.

    Label Studio drops predictions whose score is outside ``[0, 1]``.
    """
    bits = math.log2(max(n_classes, 2))
    return {"entropy": bits, "bald": bits, "authors": 2 * bits, "margin": 1.0}[method]


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` resized (area interpolation) so that its longest side is at most ``max_side``."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


@dataclass
class Scored:
    """MC-dropout result of one task, at the scoring resolution."""

    task_id: int
    score: float  # normalised to [0, 1]
    uncertainty: np.ndarray  # H' x W' float32, bits
    predicted: np.ndarray  # H' x W' uint8, argmax of the mean prediction


@dataclass
class ServingModel:
    """The model that answers predictions for a project, with its checkpoint metadata."""

    model: torch.nn.Module
    meta: dict
    lock: threading.Lock


class Service:
    """The DBSAL loop for every project this backend serves.

    Parameters
    ----------
    settings : Settings
        Method and server settings (environment variables).
    state : StateStore
        Persistent per-project state (survives restarts).
    client_factory : callable
        ``client_factory()`` returns a ``LabelStudioClient`` (a context manager).
    """

    def __init__(self, settings: Settings, state: StateStore,
                 client_factory: Callable[[], Any]) -> None:
        self.settings = settings
        self.state = state
        self.client_factory = client_factory
        self.slic_params = SlicParams(algorithm=settings.slic_algorithm,
                                      n_segments=settings.n_segments, ruler=settings.compactness)
        self.superpixels = SuperpixelCache(Path(settings.model_dir) / "superpixels",
                                           self.slic_params)
        self.device = pick_device(settings.device)
        if not settings.label_studio_api_key:
            log.warning("LABEL_STUDIO_API_KEY is not set: the backend cannot read tasks, images "
                        "or annotations, nor push predictions; set it to a legacy token or a "
                        "personal access token from Label Studio's Account & Settings")
        self._models: dict[int, ServingModel] = {}
        self._lock = threading.Lock()
        self._run_locks: dict[int, threading.Lock] = {}
        for project in state.projects():  # a restart resumes from MODEL_DIR
            self._load_checkpoint(project)

    # ------------------------------------------------------------------ entry points
    def on_setup(self, project: int, label_config: LabelConfig) -> None:
        """A project connected (or its config changed). Seeds the queue in the background
        when the project has neither a model nor a seed batch; returns at once."""
        record = self.state.get_project(project) or {}
        if record.get("checkpoint") or record.get("seed_batch"):
            return
        threading.Thread(target=self._seed_in_background, args=(project,), daemon=True,
                         name=f"dbsal-seed-{project}").start()

    def run(self, project: int) -> dict:
        """One training run and the active-learning step after it (or, before any annotation,
        the seed batch). Runs in the scheduler's background thread.

        Returns
        -------
        dict
            What happened: ``{"trained": bool, "step": int, "queried": {...}, ...}``.
        """
        with self._run_lock(project):
            config = self._label_config(project)
            started = time.perf_counter()
            with self.client_factory() as client:
                labeled, unlabeled = self._fetch_tasks(client, project)
                if labeled:
                    self._train(client, project, config, labeled)
                elif self._serving(project) is None:
                    return self._seed(client, project, unlabeled)
                else:
                    log.info("project %d: no annotations to train on; scoring only", project)
                result = self._step(client, project, config, unlabeled)
            result["seconds"] = round(time.perf_counter() - started, 1)
            log.info("project %d: run done: %s", project,
                     {k: v for k, v in result.items() if k != "queried"})
            return result

    def predict(self, project: int, tasks: list[dict], label_config: LabelConfig) -> list[dict]:
        """One prediction per task, in order: the queried superpixels of each task as brush
        regions pre-labeled with the model's guess; an empty result before the first model, when
        the budget is spent, or when the task's image cannot be used (logged)."""
        title = self.settings.model_title
        serving = self._serving(project)
        record = self.state.get_project(project) or {}
        seed = set(record.get("seed_batch") or [])
        budget = self._budget(record)
        out = []
        client = None
        try:
            for task in tasks:
                task_id = task.get("id") if isinstance(task, dict) else None
                if serving is None or budget.exhausted:
                    out.append({"result": [], "model_version": title,
                                "score": 1.0 if task_id in seed else 0.0})
                    continue
                try:
                    if client is None:
                        client = self.client_factory()
                    image = client.load_image(task, label_config.image_value)
                    scored = self._score(serving, task_id, image, label_config)
                    pred, _ = self._regions(image, scored, label_config, budget=None)
                except (LabelStudioError, ValueError) as exc:
                    log.warning("project %d task %s: no prediction: %s", project, task_id, exc)
                    pred = {"result": [], "score": 0.0, "model_version": title}
                out.append(pred)
        finally:
            if client is not None:
                client.close()
        return out

    def status(self, project: int) -> dict:
        """Model version, AL step, budget spent and left, queue length, last error."""
        record = self.state.get_project(project) or {}
        budget = self._budget(record)
        serving = self._serving(project)
        return {
            "model_version": record.get("model_version"),
            "model_loaded": serving is not None,
            "al_step": record.get("al_step", 0),
            "seed_batch": len(record.get("seed_batch") or []),
            "budget": {**budget.to_dict(), "spent": budget.spent, "left": budget.remaining,
                       "exhausted": budget.exhausted},
            "message": ("budget spent: no new regions are queried" if budget.exhausted else None),
            "queue_length": len(self.state.queue(project)),
            "last_error": record.get("last_error"),
        }

    # ------------------------------------------------------------------ tasks and labels
    def _fetch_tasks(self, client, project: int) -> tuple[list[tuple[dict, dict]], list[dict]]:
        """All of the project's tasks, read over the SDK (never from a webhook payload):
        ``(task, newest non-cancelled annotation)`` pairs for labeled tasks, and the unlabeled
        tasks (``id`` and ``data`` only; their predictions, with large RLE, are not fetched)."""
        annotations = client.annotations(project)
        labeled, unlabeled = [], []
        for task in client.list_tasks(project, include="id,data"):
            if "id" not in task:
                continue
            bare = {"id": task["id"], "data": task.get("data") or {}}
            if task["id"] in annotations:
                labeled.append((bare, annotations[task["id"]]))
            else:
                unlabeled.append(bare)
        return labeled, unlabeled

    def _training_pairs(self, client, config: LabelConfig, labeled) -> tuple[list, list]:
        """Images and label maps at the training resolution; unusable ones skipped and logged."""
        images, labels = [], []
        for task, annotation in labeled:
            try:
                image = client.load_image(task, config.image_value)
                h, w = image.shape[:2]
                label_map, warnings = annotation_to_label_map(
                    annotation.get("result") or [], config, h, w, config.class_index)
            except (LabelStudioError, AnnotationError, ValueError) as exc:
                log.warning("task %s skipped for training: %s", task.get("id"), exc)
                continue
            for warning in warnings:
                log.warning("task %s: %s", task.get("id"), warning)
            small = downscale(image, self.settings.max_side)
            images.append(small)
            labels.append(resize_labels(label_map, *small.shape[:2]))
        return images, labels

    # ------------------------------------------------------------------ training
    def _train(self, client, project: int, config: LabelConfig, labeled) -> None:
        """Train on the labeled tasks and make the result the serving model."""
        s = self.settings
        images, labels = self._training_pairs(client, config, labeled)
        if not images:
            raise RuntimeError(f"none of the {len(labeled)} annotated tasks could be used for "
                               "training (see the log for each reason)")
        serving = self._serving(project)
        if s.fine_tune and serving is not None:
            model = copy.deepcopy(serving.model)  # /predict keeps using the old one meanwhile
        else:
            torch.manual_seed(s.seed)
            model = build_model(s.arch, len(config.labels), pretrained=s.pretrained)
        sizes = {im.shape[:2] for im in images}
        crop = None if len(sizes) == 1 else (min(h for h, _ in sizes), min(w for _, w in sizes))
        cfg = TrainConfig(epochs=s.epochs, batch_size=min(s.batch_size, len(images)), lr=s.lr,
                          class_weighted=s.class_weighted, crop_size=crop, seed=s.seed,
                          device=str(self.device), progress=False)
        ds = SegmentationDataset(images, labels, crop_size=crop, scale_range=cfg.scale_range,
                                 hflip=cfg.hflip, seed=s.seed)
        log.info("project %d: training on %d images (%d epochs, %s)", project, len(images),
                 s.epochs, self.device)
        train(model, ds, None, cfg)
        model.eval()

        record = self.state.get_project(project) or {}
        version = f"{s.model_title}-{record.get('al_step', 0) + 1}-{time.strftime('%Y%m%dT%H%M%S')}"
        meta = {"arch": s.arch, "classes": list(config.labels), "version": version,
                "settings": {"arch": s.arch, "max_side": s.max_side, "epochs": s.epochs,
                             "lr": s.lr, "uncertainty": s.uncertainty},
                "trained_on": len(images)}
        path = Path(s.model_dir) / f"project-{project}" / "model.pt"
        save_checkpoint(path, model, meta)
        with self._lock:
            self._models[project] = ServingModel(model.to(self.device), meta, threading.Lock())
        self.state.update_project(project, checkpoint=str(path), model_version=version)

    # ------------------------------------------------------------------ the AL step
    def _score(self, serving: ServingModel, task_id: int, image: np.ndarray,
               config: LabelConfig) -> Scored:
        """MC-dropout uncertainty of one image at the scoring resolution."""
        s = self.settings
        small = downscale(image, s.max_side)
        x = torch.as_tensor(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float().div(255)
        with serving.lock:
            stats = mc_dropout(serving.model, x.to(self.device), n_samples=s.mc_samples,
                               mode="head")
        u = pixel_uncertainty(stats, s.uncertainty)
        score = float(image_scores(u)[0]) / max_uncertainty(s.uncertainty, len(config.labels))
        return Scored(task_id=task_id, score=min(max(score, 0.0), 1.0),
                      uncertainty=u[0].float().cpu().numpy(),
                      predicted=stats.mean_probs[0].argmax(0).to(torch.uint8).cpu().numpy())

    def _regions(self, image: np.ndarray, scored: Scored, config: LabelConfig,
                 budget: Budget | None) -> tuple[dict, dict]:
        """The prediction for one queried image: superpixels at full resolution, the split of
        their scores, one region per high superpixel (trimmed to what ``budget`` has left).

        Returns the prediction dict and its cost ``{"ids", "superpixels", "pixels"}``."""
        s = self.settings
        h, w = image.shape[:2]
        sp = self.superpixels.get(image)
        u = cv2.resize(scored.uncertainty, (w, h), interpolation=cv2.INTER_LINEAR)
        predicted = resize_labels(scored.predicted, h, w)
        sp_scores = superpixel_scores(u, sp)
        high = np.flatnonzero(split_superpixels(sp_scores, method=s.split,
                                                fraction=s.static_fraction, seed=s.seed))
        sizes = np.bincount(sp.ravel(), minlength=sp_scores.size)
        if budget is not None and budget.remaining is not None:
            high = _fit_to_budget(high, sp_scores, sizes, budget)
        norm = max_uncertainty(s.uncertainty, len(config.labels))
        pred = superpixel_prediction(sp, high, predicted, sp_scores / norm, config,
                                     s.model_title, scored.score)
        return pred, {"ids": [int(i) for i in high], "superpixels": int(high.size),
                      "pixels": int(sizes[high].sum())}

    def _step(self, client, project: int, config: LabelConfig, unlabeled) -> dict:
        """Score the unlabeled tasks with the serving model, query the top K, push predictions,
        queue and tab."""
        s = self.settings
        serving = self._serving(project)
        record = self.state.get_project(project) or {}
        step = record.get("al_step", 0) + 1
        budget = self._budget(record)
        already = set(self.state.queried(project))  # tasks charged in earlier steps

        top: list[tuple[float, int, Scored]] = []  # min-heap of the K best, maps kept
        priorities: dict[int, float] = {}
        by_id = {t["id"]: t for t in unlabeled}
        skipped = 0
        for task in unlabeled:
            try:
                image = client.load_image(task, config.image_value)
            except (LabelStudioError, ValueError) as exc:
                log.warning("task %s skipped for scoring: %s", task["id"], exc)
                skipped += 1
                continue
            scored = self._score(serving, task["id"], image, config)
            priorities[task["id"]] = scored.score
            item = (scored.score, -task["id"], scored)
            if len(top) < s.step_size:
                heapq.heappush(top, item)
            elif item[:2] > top[0][:2]:
                heapq.heapreplace(top, item)

        predictions: dict[int, dict] = {
            tid: {"result": [], "score": score, "model_version": s.model_title}
            for tid, score in priorities.items()}
        queried: dict[int, list[int]] = {}
        for _, _, scored in sorted(top, key=lambda t: t[:2], reverse=True):
            if budget.exhausted:
                log.info("project %d: budget spent (%s %s): no new regions", project,
                         budget.spent, budget.unit)
                break
            image = client.load_image(by_id[scored.task_id], config.image_value)
            pred, cost = self._regions(image, scored, config,
                                       budget if scored.task_id not in already else None)
            if not cost["ids"]:
                continue
            if scored.task_id not in already:  # a task is charged once, when first queried
                budget.charge(images=1, superpixels=cost["superpixels"], pixels=cost["pixels"])
            predictions[scored.task_id] = pred
            queried[scored.task_id] = cost["ids"]

        self._publish(client, project, predictions)
        queue = sorted(priorities.items(), key=lambda kv: (-kv[1], kv[0]))
        self.state.record_step(project, step, queried, queue=queue, budget=budget.to_dict())
        return {"trained": True, "step": step, "scored": len(priorities), "skipped": skipped,
                "queried": queried, "budget": budget.to_dict()}

    # ------------------------------------------------------------------ seed batch
    def _seed_in_background(self, project: int) -> None:
        lock = self._run_lock(project)
        if not lock.acquire(blocking=False):
            return  # a run is going; it seeds if needed
        try:
            with self.client_factory() as client:
                labeled, unlabeled = self._fetch_tasks(client, project)
                if not labeled and self._serving(project) is None:
                    self._seed(client, project, unlabeled)
        except Exception as exc:  # noqa: BLE001 - a background thread must not die silently
            log.exception("project %d: picking the seed batch failed", project)
            self.state.update_project(project, last_error=f"seed batch: {exc}")
        finally:
            lock.release()

    def _seed(self, client, project: int, unlabeled: list[dict]) -> dict:
        """Pick a random initial batch of whole images and put it first in the queue."""
        s = self.settings
        record = self.state.get_project(project) or {}
        ids = sorted(t["id"] for t in unlabeled)
        still_unlabeled = set(ids)
        seed_batch = [i for i in (record.get("seed_batch") or []) if i in still_unlabeled]
        if not seed_batch and ids:
            rng = np.random.default_rng([s.seed, project])
            seed_batch = sorted(int(i) for i in rng.choice(ids, min(s.initial_batch, len(ids)),
                                                           replace=False))
        budget = self._budget(record)
        if not record.get("seed_batch"):
            by_id = {t["id"]: t for t in unlabeled}
            config = self._label_config(project)
            for tid in seed_batch:
                try:
                    image = client.load_image(by_id[tid], config.image_value)
                    n_sp = int(self.superpixels.get(image).max()) + 1
                    budget.charge(images=1, superpixels=n_sp, pixels=image.shape[0] * image.shape[1])
                except (LabelStudioError, ValueError) as exc:
                    log.warning("seed task %s: cannot read its image: %s", tid, exc)
        predictions = {t: {"result": [], "score": 1.0 if t in seed_batch else 0.0,
                           "model_version": s.model_title} for t in ids}
        self._publish(client, project, predictions)
        queue = [(t, 1.0) for t in seed_batch] + [(t, 0.0) for t in ids if t not in seed_batch]
        self.state.update_project(project, seed_batch=seed_batch, budget=budget.to_dict())
        self.state.set_queue(project, queue)
        log.info("project %d: seed batch of %d whole images queued first", project, len(seed_batch))
        return {"trained": False, "step": 0, "seed_batch": seed_batch, "budget": budget.to_dict()}

    # ------------------------------------------------------------------ Label Studio output
    def _publish(self, client, project: int, predictions: dict[int, dict]) -> None:
        """Replace the backend's predictions, make the project display them, update the tab."""
        title = self.settings.model_title
        client.delete_predictions(project, model_version=title)
        client.push_predictions(project, [{"task": tid, **p} for tid, p in predictions.items()])
        if predictions and client.project_model_version(project) != title:
            client.set_project_model_version(project, title)
        client.ensure_queue_view(project, QUEUE_VIEW_TITLE)

    # ------------------------------------------------------------------ helpers
    def _run_lock(self, project: int) -> threading.Lock:
        with self._lock:
            return self._run_locks.setdefault(project, threading.Lock())

    def _serving(self, project: int) -> ServingModel | None:
        with self._lock:
            return self._models.get(project)

    def _label_config(self, project: int) -> LabelConfig:
        record = self.state.get_project(project) or {}
        if not record.get("label_config"):
            raise RuntimeError(f"project {project} has no label config: connect the backend "
                               "to it in the project's Model settings first")
        return parse_label_config(record["label_config"])

    def _budget(self, record: dict) -> Budget:
        if record.get("budget"):
            budget = Budget.from_dict(record["budget"])
            budget.limit = self.settings.budget  # the setting may have changed since
            budget.unit = self.settings.budget_unit
            return budget
        return Budget(unit=self.settings.budget_unit, limit=self.settings.budget)

    def _load_checkpoint(self, project: int) -> None:
        record = self.state.get_project(project) or {}
        path = record.get("checkpoint")
        if not path:
            return
        try:
            config = parse_label_config(record["label_config"]) if record.get("label_config") else None
            model, meta = load_checkpoint(path, expected_classes=config.labels if config else None,
                                          device=self.device)
        except (OSError, ValueError, CheckpointMismatch, RuntimeError) as exc:
            log.error("project %d: checkpoint %s not loaded: %s", project, path, exc)
            self.state.update_project(project, last_error=f"checkpoint not loaded: {exc}")
            return
        self._models[project] = ServingModel(model, meta, threading.Lock())
        log.info("project %d: resumed model %s", project, meta.get("version"))


def _fit_to_budget(ids: np.ndarray, scores: np.ndarray, sizes: np.ndarray,
                   budget: Budget) -> np.ndarray:
    """The most uncertain of ``ids`` that fit in what the budget has left (in its unit)."""
    left = budget.remaining
    if budget.unit == "images":
        return ids if left >= 1 else ids[:0]
    order = ids[np.argsort(-scores[ids], kind="stable")]
    cost = np.ones(order.size, np.int64) if budget.unit == "superpixels" else sizes[order]
    keep = order[np.cumsum(cost) <= left]
    return np.sort(keep)
