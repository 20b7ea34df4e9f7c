"""One training run and the step after it (a job, see :mod:`.jobs`).

Read every task and annotation over the API (payloads are never trusted), measure the labeling
effort and how many pushed pre-labels people kept, fine-tune a copy of the serving model on
every annotation (pixels no brush or polygon covers are ignored), save it atomically, then score
the unlabeled pool and push the step's queries (:func:`~dbsal_backend.engine.active.active_step`
through the compute backend, the same step the simulator runs). Before any model exists, the
seed batch (:mod:`.seed_batch`) is put first in the queue instead.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
import torch

from ..labelstudio import publish
from ..engine.labeling_budget import Effort
from ..engine.checkpoints import load_checkpoint, save_checkpoint
from .connect import Connections
from ..engine.constants import IGNORE_INDEX
from .context import NotConnected, ServiceContext
from ..engine.data import fit_side, resize_nearest
from ..labelstudio.images import ImageFetchError
from ..labelstudio.label_config import LabelConfig
from ..engine.label_maps import inverse_sqrt_weights, pixel_counts
from ..labelstudio.annotations import AnnotationError, annotation_to_label_map
from ..labelstudio.predictions import query_prediction
from ..engine.networks import build_model
from ..engine.regions import Region, dominant_classes, region_map
from .seed_batch import seed
from .state import ProjectRecord, QueryRecord
from ..engine.training import class_weights, renews_anchor

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(context: ServiceContext, connections: Connections, project: int) -> dict[str, Any]:
    """One training run and the step after it; before any annotation, the seed batch."""
    started = time.perf_counter()
    with context.client_factory() as client:
        record = connections.connect(client, project)
        if record is None:
            raise NotConnected(project)
        config = context.config(record)
        tasks = list(client.tasks(project))
        labeled = [t for t in tasks if t["total_annotations"]]
        unlabeled = [t for t in tasks if not t["total_annotations"]]
        fetcher = context.fetcher(client)
        try:
            result: dict[str, Any] = {"tasks": len(tasks), "labeled": len(labeled)}
            counts = np.zeros(len(config.labels), np.int64)
            if labeled:
                images, labels, exact, spent = _labeled(context, client, fetcher, record,
                                                        config, labeled)
                record = context.state.update(project, spent=spent)
                counts = pixel_counts(labels, len(config.labels))
                if images:
                    record = _train(context, record, config, images, labels, exact)
                    result["trained_on"] = len(images)
            if record.checkpoint is None:
                seeded = seed(context, client, project, tasks)
                seeded.pop("annotated", None)  # "labeled" above
                result.update(seeded)
            else:
                result.update(_step(context, client, fetcher, record, config, unlabeled,
                                    labeled, counts))
        finally:
            fetcher.close()
    result["seconds"] = round(time.perf_counter() - started, 1)
    log.info("project %d: run done: %s", project, result)
    return result


def _labeled(context: ServiceContext, client, fetcher, record: ProjectRecord,
             config: LabelConfig, labeled: list[dict]) -> tuple[list, list, list, Effort]:
    """Training pairs at the working resolution, whether each was labeled pixel by pixel (a
    task without pushed regions: a whole image, never trimmed) and the effort they represent;
    records the pre-label counts of answered queries."""
    annotations = client.annotations([t["id"] for t in labeled])
    queries = context.state.queries(record.project_id)
    images, labels, exact, effort = [], [], [], Effort()
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
            _judge(context, record.project_id, query, image, label_map, len(config.labels))
        effort += Effort(1, len(annotation.get("result") or []),
                         int((label_map != IGNORE_INDEX).sum()))
        small = fit_side(image, context.settings.max_side)
        images.append(small)
        labels.append(resize_nearest(label_map, *small.shape[:2]))
        exact.append(query is None)
    return images, labels, exact, effort


def _judge(context: ServiceContext, project: int, query: QueryRecord, image: np.ndarray,
           label_map: np.ndarray, n_classes: int) -> None:
    """How many of a query's pre-labels the annotation kept (its dominant class)."""
    if query.superpixels != context.slic.key():
        context.state.mark_answered(project, [query.task_id])
        return
    sp = context.superpixels.get(image)
    if sp.shape != label_map.shape:
        label_map = resize_nearest(label_map, *sp.shape)
    regions = [Region(ids, label, confidence, 0) for label, ids, confidence in query.regions]
    given = dominant_classes(region_map(sp, regions), label_map, len(regions), n_classes)
    prelabels = np.array([region.label for region in regions])
    judged = int(((given >= 0) & (prelabels < n_classes)).sum())  # a start's: no pre-label
    right = int((given == prelabels).sum())
    context.state.set_prelabels(project, query.task_id, right, judged)


def _anchor_checkpoint(project: int) -> str:
    """Where a project keeps its anchor (relative to ``MODEL_DIR``): the model every later run
    fine-tunes with ``DBSAL_FINE_TUNE=first`` or ``doubling`` (the first run's; under
    ``doubling`` renewed by each run on at least twice its images)."""
    return f"project-{project}/anchor-model.pt"


def _start_model(context: ServiceContext, record: ProjectRecord, config: LabelConfig):
    """The model a run fine-tunes (``DBSAL_FINE_TUNE``) and the images of the anchor it is (None
    but for ``first`` and ``doubling``): a copy of the served one (``last``), the anchor
    (``first``, ``doubling``); no model: this run trains from ImageNet weights, as the first."""
    s = context.settings
    served = context.served(record, config)
    if served is None or s.fine_tune == "off":
        return None, None
    if s.fine_tune == "last":
        with served.lock:
            return copy.deepcopy(served.model), None
    try:
        model, meta = load_checkpoint(s.model_dir / _anchor_checkpoint(record.project_id),
                                      expected_classes=config.labels, device="cpu")
    except (OSError, ValueError) as exc:  # missing, damaged, or for other classes
        log.warning("project %d: no anchor model to fine-tune (%s); this run trains from "
                    "ImageNet weights and becomes the anchor", record.project_id, exc)
        return None, None
    return model, int(meta.get("trained_on", 0))  # 0: unknown (renewed by doubling)


def _train(context: ServiceContext, record: ProjectRecord, config: LabelConfig, images,
           labels, exact) -> ProjectRecord:
    """Fine-tune (or train anew) on every annotation and make the result the served model
    (``exact``: per image, labeled pixel by pixel; ``DBSAL_TRIM`` trims only the others)."""
    s = context.settings
    model, anchor_images = _start_model(context, record, config)
    first = model is None
    if first:
        torch.manual_seed(s.seed)
        model = build_model(s.arch, len(config.labels), pretrained=s.pretrained)
    log.info("project %d: training on %d images (%s)", record.project_id, len(images),
             context.device)
    recipe = context.recipe(config, first)
    model = context.compute.train(model, images, labels, recipe, context.device, exact=exact)
    weights = class_weights(labels, len(config.labels)) if recipe.class_weighted else None
    version = f"{context.title(record)}-{record.al_step + 1}-" \
              f"{time.strftime('%Y%m%dT%H%M%S')}"
    relative = f"project-{record.project_id}/model-{version}.pt"
    meta = {"arch": s.arch, "classes": list(config.labels), "version": version,
            "settings": {"max_side": s.max_side, "recipe": repr(recipe)},
            "class_weights": None if weights is None else [float(w) for w in weights],
            "trained_on": len(images)}
    save_checkpoint(s.model_dir / relative, model, meta)
    if renews_anchor(s.fine_tune, None if first else anchor_images, len(images)):
        save_checkpoint(s.model_dir / _anchor_checkpoint(record.project_id), model, meta)
    previous = record.checkpoint
    record = context.state.update(record.project_id, checkpoint=relative,
                                  model_version=version, last_trained=time.time())
    if previous and previous != relative:
        (s.model_dir / previous).unlink(missing_ok=True)
    return record


def _step(context: ServiceContext, client, fetcher, record: ProjectRecord, config: LabelConfig,
          unlabeled: list[dict], labeled: list[dict], counts: np.ndarray) -> dict[str, Any]:
    """Score the unlabeled pool, push the step's queries, record the step."""
    s = context.settings
    project = record.project_id
    step = record.al_step + 1
    title = context.title(record)
    served = context.served(record, config)
    if served is None:
        raise RuntimeError(f"project {project}: checkpoint {record.checkpoint} is missing")
    left = context.budget.left(record.spent)
    if context.budget.exhausted(record.spent):
        publish.replace(client, project, title, {})
        log.info("project %d: the labeling budget is spent; no new regions", project)
        return {"step": record.al_step, "budget_spent": True}
    if not unlabeled:  # a task is asked once: with every one annotated, the loop is done
        publish.replace(client, project, title, {})
        log.info("project %d: every task has an annotation; no new regions", project)
        return {"step": record.al_step, "pool_done": True}
    skipped: list[int] = []

    def skip(task: int, exc: Exception) -> None:
        skipped.append(task)
        log.warning("task %s skipped: %s", task, exc)

    policy = context.policy(config)
    weights = inverse_sqrt_weights(counts, "rarest") if policy.class_balanced else None
    result = context.compute.step(unlabeled, fetcher, config.image_value,
                                  context.scorer(served, len(config.labels)),
                                  context.superpixels.get, policy, skip, budget_left=left,
                                  budget_unit=context.budget.unit, class_weights=weights,
                                  seed=s.seed)
    predictions = {q.key: query_prediction(q, config, title) for q in result.queries}
    publish.replace(client, project, title, predictions)
    regions = [len(q.regions) for q in result.queries]
    details = {"scored": len(result.priorities), "skipped": len(skipped),
               "queried": len(result.queries), "regions": sum(regions),
               "regions_per_image_median": float(np.median(regions)) if regions else None,
               "labeled_tasks": len(labeled), "model_version": record.model_version}
    context.state.record_step(project, step,
                              [QueryRecord.of(q, step, context.slic.key())
                               for q in result.queries], details)
    return {"step": step, **details}
