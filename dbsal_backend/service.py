"""The active-learning loop against Label Studio projects: a short orchestrator.

:class:`Service` asks one component per job: :mod:`.connect` (is a project really connected,
what to set up in it), :mod:`.ls_client` and :mod:`.images` (tasks, annotations, pictures),
:mod:`.serving` (the model that answers), :mod:`.active` (the step, the same code the simulator
runs), :mod:`.training` (the recipe), :mod:`.publish` (predictions into Label Studio) and
:mod:`.state` (what survives a restart). Its entry points:

- :meth:`Service.setup` — Label Studio connects (``/setup``): the config is checked at once, the
  project is confirmed over Label Studio's API in the background, then prepared and seeded;
- :meth:`Service.run` — one training run and the step after it (a job, see :mod:`.jobs`);
- :meth:`Service.predict` — regions on demand for tasks Label Studio opens without predictions;
- :meth:`Service.status` — what ``/status`` shows.

A run: read every task and annotation over the API (payloads are never trusted), measure the
labeling effort and how many pushed pre-labels people kept, fine-tune a copy of the serving
model on every annotation (pixels no brush covers are ignored), save it atomically, then score
the unlabeled pool and push the step's queries. Before any model exists, a random seed batch of
whole images is put first in the queue instead.
"""

from __future__ import annotations

import copy
from dataclasses import replace
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import publish
from .active import Candidate, QueryPolicy, query_candidates
from .cluster import make_compute
from .budget import Effort
from .checkpoints import save_checkpoint
from .connect import INSTANCE_ID, SelfCheckFailed, find_backend, prepare_project
from .constants import IGNORE_INDEX
from .data import fit_side, resize_nearest
from .images import ImageFetchError, ImageFetcher
from .label_config import LabelConfig, parse_label_config
from .label_maps import inverse_sqrt_weights, pixel_counts
from .ls_annotations import AnnotationError, annotation_to_label_map
from .ls_client import LabelStudioClient, LabelStudioError
from .ls_predictions import empty_prediction, query_prediction
from .networks import build_model, pick_device
from .regions import region_map
from .scoring import Scorer
from .serving import ServingModels
from .settings import Settings
from .state import ProjectRecord, QueryRecord, StateStore
from .superpixels import SuperpixelCache
from .training import class_weights

__all__ = ["NotConnected", "Service"]

log = logging.getLogger(__name__)

#: How long a /setup keeps asking Label Studio whether the backend's row was saved.
CONFIRM_SECONDS = 30.0
#: Pending confirmations at most (a flood of /setup calls costs no more than this).
MAX_PENDING_CONFIRMATIONS = 8


class NotConnected(LookupError):
    """The project has not (or no longer) confirmed this backend."""

    def __init__(self, project: int) -> None:
        super().__init__(f"project {project} is not connected to this backend: connect it in "
                         f"the project's Settings > Model (Label Studio calls /setup), then "
                         f"wait a few seconds for the backend to confirm it")
        self.project = project


class Service:
    """The DBSAL loop for every project this backend serves.

    Parameters
    ----------
    settings : Settings
    state : StateStore
    client_factory : callable, optional
        ``client_factory()`` opens a :class:`LabelStudioClient` (tests pass a fake).
    models : ServingModels, optional
        The models that answer; built from the settings when omitted.
    instance_id : str
        This server's instance id, answered by ``/health`` (how a project is confirmed).
    """

    def __init__(self, settings: Settings, state: StateStore,
                 client_factory: Callable[[], LabelStudioClient] | None = None,
                 models: ServingModels | None = None, instance_id: str = INSTANCE_ID) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.state = state
        self.client_factory = client_factory or (
            lambda: LabelStudioClient(settings.label_studio_url, settings.api_key))
        self.device = pick_device(settings.device)
        self.models = models or ServingModels(settings.model_dir, self.device)
        self.budget = settings.labeling_budget()
        self.slic = settings.slic_params()
        self.superpixels = SuperpixelCache(settings.model_dir / "superpixels", self.slic)
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._compute = None
        #: ``on_labels_found(project)`` asks for a run (the runtime wires its scheduler here).
        self.on_labels_found: Callable[[int], Any] | None = None

    @property
    def compute(self):
        """Where runs train and score (:func:`~dbsal_backend.cluster.make_compute`; Ray when
        ``RAY_ADDRESS`` is set), made on first use (in the run's process)."""
        if self._compute is None:
            self._compute = make_compute(self.settings)
        return self._compute

    # ------------------------------------------------------------------ connecting
    def setup(self, project: int, schema: str) -> str:
        """Label Studio connected or re-checked the backend. Checks ``schema`` (raises
        ``LabelConfigError``) and answers the model version at once; an unconfirmed project
        is confirmed, prepared and seeded in the background."""
        parse_label_config(schema)
        record = self.state.get(project)
        if record is not None and record.connected:
            return record.title or self.settings.model_title
        with self._lock:
            start = project not in self._pending and len(self._pending) < \
                MAX_PENDING_CONFIRMATIONS
            if start:
                self._pending.add(project)
        if start:
            threading.Thread(target=self._confirm_in_background, args=(project,), daemon=True,
                             name=f"dbsal-confirm-{project}").start()
        return self.settings.model_title

    def _confirm_in_background(self, project: int) -> None:
        try:
            deadline = time.monotonic() + CONFIRM_SECONDS
            while time.monotonic() < deadline:
                with self.client_factory() as client:
                    try:
                        record = self.connect(client, project)
                    except SelfCheckFailed as exc:
                        log.info("project %d: %s; trying again", project, exc)
                        record = None
                    if record is not None:
                        self._start(client, project, record)
                        return
                time.sleep(1.0)
            log.warning("project %d called /setup but Label Studio does not list this backend "
                        "for it: nothing was registered", project)
        except Exception:  # noqa: BLE001 - a background thread must not die silently
            log.exception("project %d: confirming the connection failed", project)
        finally:
            with self._lock:
                self._pending.discard(project)

    def _start(self, client: LabelStudioClient, project: int, record: ProjectRecord) -> None:
        """A newly confirmed project: seed what is missing of the seed batch and, when people
        have already labeled tasks (before the backend was connected, no webhook tells of
        them), start the first run on those labels at once."""
        tasks = list(client.tasks(project))
        seeded = self.seed(client, project, tasks)
        if record.checkpoint is None and seeded.get("annotated") and self.on_labels_found:
            log.info("project %d: %d tasks are already labeled: the first run starts now",
                     project, seeded["annotated"])
            self.on_labels_found(project)

    def connect(self, client: LabelStudioClient, project: int) -> ProjectRecord | None:
        """Confirm over the API that ``project`` connected this backend; record it (with the
        label config Label Studio holds) and prepare it. None when it is not connected."""
        try:
            backend = find_backend(client, project, self.instance_id, self.settings.public_url)
        except LabelStudioError as exc:
            if exc.status_code == 404:
                return None
            raise
        if backend is None:
            record = self.state.get(project)
            if record is not None and record.connected:
                self.state.update(project, connected=False,
                                  last_error="the project no longer lists this backend")
            return None
        schema = client.get_project(project).get("label_config") or ""
        parse_label_config(schema)
        done = prepare_project(client, project, backend["url"], self.settings.set_sampling,
                               self.settings.auth)
        record = self.state.update(project, connected=True, label_config=schema,
                                   title=backend.get("title") or self.settings.model_title)
        log.info("project %d connected (backend %r%s)", project, record.title,
                 f"; set {', '.join(done)}" if done else "")
        return record

    def require(self, project: int) -> ProjectRecord:
        """The record of a connected project; :class:`NotConnected` otherwise."""
        record = self.state.get(project)
        if record is None or not record.connected:
            raise NotConnected(project)
        return record

    # ------------------------------------------------------------------ helpers
    def fetcher(self, client: LabelStudioClient) -> ImageFetcher:
        s = self.settings
        return ImageFetcher(s.label_studio_url, client.auth_header, s.allowed_image_origins,
                            cache_dir=s.model_dir / "images", max_bytes=s.max_image_bytes,
                            max_pixels=s.max_image_pixels, timeout=s.image_timeout)

    def scorer(self, served, n_classes: int) -> Scorer:
        """The scorer of a served model, made on first use (it takes an inference copy of the
        model) and kept with that model, so the requests it answers share it."""
        if served.scorer is None:
            s = self.settings
            served.scorer = Scorer(served.model, n_classes, heuristic=s.uncertainty,
                                   mc_samples=s.mc_samples, max_side=s.max_side, seed=s.seed,
                                   batch_size=s.score_batch_size, device=self.device,
                                   lock=served.lock,
                                   class_weights=served.meta.get("class_weights"))
        return served.scorer

    def policy(self, config: LabelConfig) -> QueryPolicy:
        """What a step asks in this project (``DBSAL_REGIONS=auto`` follows the config)."""
        return self.settings.query_policy(polygons=config.polygon_name is not None)

    @staticmethod
    def config(record: ProjectRecord) -> LabelConfig:
        return parse_label_config(record.label_config or "")

    def served(self, record: ProjectRecord, config: LabelConfig):
        return self.models.get(record.project_id, record.checkpoint, config.labels)

    # ------------------------------------------------------------------ on demand
    def predict(self, project: int, tasks: list[dict]) -> list[dict]:
        """One prediction per task, in order: regions of the task's uncertain superpixels
        (computed now with the serving model) or, before the first model, an empty prediction
        scored 0 (label the whole image). The task data is read from Label Studio (one request
        for the batch, in a way that does not make Label Studio call ``/predict`` again), not
        taken from the request: a task of another project, or one Label Studio does not know,
        gets no regions; images come from Label Studio or an allowed origin only
        (:mod:`.images`)."""
        record = self.require(project)
        config = self.config(record)
        title = record.title or self.settings.model_title
        served = self.served(record, config)
        if served is None or self.budget.exhausted(record.spent):
            return [empty_prediction(title, 0.0) for _ in tasks]
        out = []
        with self.client_factory() as client:
            fetcher = self.fetcher(client)
            try:
                scorer = self.scorer(served, len(config.labels))
                policy = replace(self.policy(config), images=1, scope="image")
                known = client.tasks_by_id(project, [t["id"] for t in tasks])
                made = []
                for task in tasks:
                    task_id = task.get("id")
                    try:
                        if task_id not in known:
                            raise ImageFetchError(f"task {task_id} is not a task of project "
                                                  f"{project}")
                        image = fetcher.load(known[task_id], config.image_value)
                    except (ImageFetchError, LabelStudioError, TypeError, ValueError) as exc:
                        log.warning("project %d task %s: no regions: %s", project, task_id, exc)
                        out.append(empty_prediction(title, 0.0))
                        continue
                    scores = scorer.score([image])[0]
                    query = query_candidates([Candidate(task_id, image, scores)],
                                             self.superpixels.get, policy, len(config.labels),
                                             labels_of=scorer.prelabels)[0]
                    out.append(query_prediction(query, config, title))
                    made.append(_query_record(query, record.al_step, self.slic.key()))
                self.state.add_queries(project, made)
            finally:
                fetcher.close()
        return out

    # ------------------------------------------------------------------ a run
    def run(self, project: int) -> dict[str, Any]:
        """One training run and the step after it; before any annotation, the seed batch."""
        started = time.perf_counter()
        with self.client_factory() as client:
            record = self.connect(client, project)
            if record is None:
                raise NotConnected(project)
            config = self.config(record)
            tasks = list(client.tasks(project))
            labeled = [t for t in tasks if t["total_annotations"]]
            unlabeled = [t for t in tasks if not t["total_annotations"]]
            fetcher = self.fetcher(client)
            try:
                result: dict[str, Any] = {"tasks": len(tasks), "labeled": len(labeled)}
                counts = np.zeros(len(config.labels), np.int64)
                if labeled:
                    images, labels, spent = self._labeled(client, fetcher, record, config,
                                                          labeled)
                    record = self.state.update(project, spent=spent)
                    counts = pixel_counts(labels, len(config.labels))
                    if images:
                        record = self._train(record, config, images, labels)
                        result["trained_on"] = len(images)
                if record.checkpoint is None:
                    seeded = self.seed(client, project, tasks)
                    seeded.pop("annotated", None)  # "labeled" above
                    result.update(seeded)
                else:
                    result.update(self._step(client, fetcher, record, config, unlabeled,
                                             labeled, counts))
            finally:
                fetcher.close()
        result["seconds"] = round(time.perf_counter() - started, 1)
        log.info("project %d: run done: %s", project, result)
        return result

    def _labeled(self, client, fetcher, record: ProjectRecord, config: LabelConfig,
                 labeled: list[dict]) -> tuple[list, list, Effort]:
        """Training pairs at the working resolution, the effort they represent, and the
        pre-label counts of answered queries."""
        annotations = client.annotations([t["id"] for t in labeled])
        queries = self.state.queries(record.project_id)
        images, labels, effort = [], [], Effort()
        for task in labeled:
            annotation = annotations.get(task["id"])
            if annotation is None:
                continue  # only cancelled (skipped) annotations
            try:
                image = fetcher.load(task, config.image_value)
                h, w = image.shape[:2]
                label_map, warnings = annotation_to_label_map(
                    annotation.get("result") or [], config, h, w, config.class_index)
            except (ImageFetchError, AnnotationError, ValueError) as exc:
                log.warning("task %s left out of training: %s", task["id"], exc)
                continue
            for warning in warnings:
                log.warning("task %s: %s", task["id"], warning)
            query = queries.get(task["id"])
            if query is not None and query.prelabels_judged is None:
                self._judge(record.project_id, query, image, label_map)
            effort += Effort(1, len(annotation.get("result") or []),
                             int((label_map != IGNORE_INDEX).sum()))
            small = fit_side(image, self.settings.max_side)
            images.append(small)
            labels.append(resize_nearest(label_map, *small.shape[:2]))
        return images, labels, effort

    def _judge(self, project: int, query: QueryRecord, image: np.ndarray,
               label_map: np.ndarray) -> None:
        """How many of a query's pre-labels the annotation kept (its dominant class)."""
        if query.superpixels != self.slic.key():
            self.state.mark_answered(project, [query.task_id])
            return
        sp = self.superpixels.get(image)
        if sp.shape != label_map.shape:
            label_map = resize_nearest(label_map, *sp.shape)
        index = region_map(sp, [_Region(ids) for _, ids, _ in query.regions])
        right = judged = 0
        for k, (label, _, _) in enumerate(query.regions):
            given = label_map[(index == k) & (label_map != IGNORE_INDEX)]
            if given.size:
                judged += 1
                right += int(np.bincount(given).argmax() == label)
        self.state.set_prelabels(project, query.task_id, right, judged)

    def _train(self, record: ProjectRecord, config: LabelConfig, images, labels) -> ProjectRecord:
        """Fine-tune (or train anew) on every annotation and make the result the served model."""
        s = self.settings
        served = self.served(record, config)
        first = not (s.fine_tune and served is not None)
        if not first:
            with served.lock:
                model = copy.deepcopy(served.model)
        else:
            torch.manual_seed(s.seed)
            model = build_model(s.arch, len(config.labels), pretrained=s.pretrained)
        log.info("project %d: training on %d images (%s)", record.project_id, len(images),
                 self.device)
        recipe = s.recipe(first=first)
        model = self.compute.train(model, images, labels, recipe, self.device)
        weights = class_weights(labels, len(config.labels)) if recipe.class_weighted else None
        version = f"{record.title or s.model_title}-{record.al_step + 1}-" \
                  f"{time.strftime('%Y%m%dT%H%M%S')}"
        relative = f"project-{record.project_id}/model-{version}.pt"
        save_checkpoint(s.model_dir / relative, model, {
            "arch": s.arch, "classes": list(config.labels), "version": version,
            "settings": {"max_side": s.max_side, "recipe": repr(recipe)},
            "class_weights": None if weights is None else [float(w) for w in weights],
            "trained_on": len(images)})
        previous = record.checkpoint
        record = self.state.update(record.project_id, checkpoint=relative, model_version=version,
                                   last_trained=time.time())
        if previous and previous != relative:
            (s.model_dir / previous).unlink(missing_ok=True)
        return record

    def _step(self, client, fetcher, record: ProjectRecord, config: LabelConfig,
              unlabeled: list[dict], labeled: list[dict], counts: np.ndarray) -> dict[str, Any]:
        """Score the unlabeled pool, push the step's queries, record the step."""
        s = self.settings
        project = record.project_id
        step = record.al_step + 1
        title = record.title or s.model_title
        served = self.served(record, config)
        if served is None:
            raise RuntimeError(f"project {project}: checkpoint {record.checkpoint} is missing")
        left = self.budget.left(record.spent)
        if self.budget.exhausted(record.spent):
            publish.replace(client, project, title, {})
            log.info("project %d: the labeling budget is spent; no new regions", project)
            return {"step": record.al_step, "budget_spent": True}
        by_id = {t["id"]: t for t in unlabeled}
        skipped: list[int] = []

        def skip(task: int, exc: Exception) -> None:
            skipped.append(task)
            log.warning("task %s skipped: %s", task, exc)

        policy = self.policy(config)
        weights = inverse_sqrt_weights(counts, "rarest") if policy.class_balanced else None
        result = self.compute.step(unlabeled, fetcher, config.image_value,
                                   self.scorer(served, len(config.labels)), self.superpixels.get,
                                   policy, skip, budget_left=left,
                                   budget_unit=self.budget.unit, class_weights=weights,
                                   seed=s.seed)
        predictions = {q.key: query_prediction(q, config, title) for q in result.queries}
        publish.replace(client, project, title, predictions)
        regions = [len(q.regions) for q in result.queries]
        details = {"scored": len(result.priorities), "skipped": len(skipped),
                   "queried": len(result.queries), "regions": sum(regions),
                   "regions_per_image_median": float(np.median(regions)) if regions else None,
                   "labeled_tasks": len(labeled), "model_version": record.model_version}
        self.state.record_step(project, step,
                               [_query_record(q, step, self.slic.key()) for q in result.queries],
                               {k: v for k, v in result.priorities.items() if k in by_id},
                               details)
        return {"step": step, **details}

    # ------------------------------------------------------------------ seed batch
    def seed(self, client: LabelStudioClient, project: int,
             tasks: list[dict] | None = None) -> dict[str, Any]:
        """Before any model: a random batch of whole images first in the queue (kept while
        its tasks are unlabeled), as many as ``DBSAL_INITIAL_BATCH`` less the tasks already
        labeled (none when that many are)."""
        s = self.settings
        record = self.require(project)
        if record.checkpoint is not None:
            return {}
        if tasks is None:
            tasks = list(client.tasks(project))
        ids = sorted(t["id"] for t in tasks if not t["total_annotations"])
        annotated = len(tasks) - len(ids)
        wanted = max(0, s.initial_batch - annotated)
        batch = [t for t in record.seed_batch if t in set(ids)][:wanted]
        if not batch and ids and wanted:
            rng = np.random.default_rng([s.seed, project])
            batch = sorted(int(i) for i in rng.choice(ids, min(wanted, len(ids)),
                                                       replace=False))
        title = record.title or s.model_title
        publish.replace(client, project, title, {t: empty_prediction(title, 0.0) for t in batch})
        self.state.update(project, seed_batch=batch)
        log.info("project %d: seed batch of %d whole images first in the queue (%d tasks "
                 "labeled already)", project, len(batch), annotated)
        return {"step": 0, "seed_batch": batch, "annotated": annotated}

    # ------------------------------------------------------------------ status
    def status(self, project: int) -> dict[str, Any]:
        """What the backend knows of a project (the ``service`` part of ``/status``)."""
        record = self.require(project)
        steps = self.state.steps(project)
        accuracy = self.state.prelabel_accuracy(project)
        queries = self.state.queries(project)
        ready = sum(1 for q in queries.values() if q.step == record.al_step and not q.answered)
        return {
            "title": record.title,
            "model_version": record.model_version,
            "al_step": record.al_step,
            "seed_batch": list(record.seed_batch),
            "budget": self.budget.status(record.spent),
            "questions_ready": ready,
            "steps": [{"step": st.step, "finished_at": st.finished_at, **st.details,
                       "prelabel_accuracy": accuracy.get(st.step, {}).get("accuracy"),
                       "prelabels_judged": accuracy.get(st.step, {}).get("judged")}
                      for st in steps],
        }


class _Region:
    """A stored region as :func:`~dbsal_backend.regions.region_map` reads it."""

    def __init__(self, ids: tuple[int, ...]) -> None:
        self.superpixels = ids


def _query_record(query, step: int, superpixels: str) -> QueryRecord:
    return QueryRecord(int(query.key), step, superpixels,
                       tuple((r.label, r.superpixels, round(r.confidence, 4))
                             for r in query.regions))

