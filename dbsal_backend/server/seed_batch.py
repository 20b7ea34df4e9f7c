"""The seed batch: before any model, the seed tasks first in the labeling queue.

A random batch of ``DBSAL_INITIAL_BATCH`` tasks, less the tasks people have labeled already (none
when that many are), each with a prediction scored 0, so that Label Studio's uncertainty
sampling serves them first; the batch is kept while its tasks are unlabeled. With
``DBSAL_START=images`` the prediction is empty (label the whole image); with ``regions`` it
holds ``DBSAL_START_REGIONS`` polygons with no class, the image's superpixels most different in
colour (:func:`~dbsal_backend.engine.start.colour_regions`, drawn per task, so a re-seed asks
the same), each for a person to give its class; they are stored as step 0's queries, so that
training treats the answers as regions, not whole images. A seed task whose image cannot be
loaded is asked whole.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ..engine.active import Query
from ..engine.start import colour_regions
from ..labelstudio import publish
from ..labelstudio.client import LabelStudioClient, LabelStudioError
from ..labelstudio.images import ImageFetchError
from ..labelstudio.label_config import LabelConfig
from ..labelstudio.predictions import empty_prediction, query_prediction
from .context import ServiceContext
from .state import QueryRecord

__all__ = ["seed", "seed_in_background"]

log = logging.getLogger(__name__)


def seed(context: ServiceContext, client: LabelStudioClient, project: int,
         tasks: list[dict] | None = None) -> dict[str, Any]:
    """Put the project's seed batch first in the queue (nothing once a model exists).

    Returns ``{"step": 0, "seed_batch": [task ids], "annotated": tasks labeled already}``, or
    ``{}`` when the project has a model.
    """
    s = context.settings
    record = context.require(project)
    if record.checkpoint is not None:
        return {}
    config = context.config(record)
    polygons = config.polygon_name is not None
    if tasks is None:
        tasks = list(client.tasks(project))
    ids = sorted(t["id"] for t in tasks if not t["total_annotations"])
    annotated = len(tasks) - len(ids)
    wanted = max(0, s.seed_tasks(polygons) - annotated)
    batch = [t for t in record.seed_batch if t in set(ids)][:wanted]
    if not batch and ids and wanted:
        rng = np.random.default_rng([s.seed, project])
        batch = sorted(int(i) for i in rng.choice(ids, min(wanted, len(ids)), replace=False))
    title = context.title(record)
    predictions = {t: empty_prediction(title, 0.0) for t in batch}
    if s.start_for(polygons) == "regions" and batch:
        by_id = {t["id"]: t for t in tasks}
        predictions.update(_start_regions(context, client, project, config, title,
                                          [by_id[t] for t in batch]))
    publish.replace(client, project, title, predictions)
    context.state.update(project, seed_batch=batch)
    asked = sum(1 for p in predictions.values() if p["result"])
    log.info("project %d: seed batch of %d tasks first in the queue, %d of them asking regions "
             "(%d tasks labeled already)", project, len(batch), asked, annotated)
    return {"step": 0, "seed_batch": batch, "annotated": annotated}


def _start_regions(context: ServiceContext, client: LabelStudioClient, project: int,
                   config: LabelConfig, title: str, tasks: list[dict]) -> dict[int, dict]:
    """The seed tasks' start regions as predictions (scored 0), stored as step 0's queries; a
    task whose image cannot be loaded is left out (it stays a whole-image task)."""
    s = context.settings
    no_class = len(config.labels)
    fetcher = context.fetcher(client)
    predictions, made = {}, []
    try:
        for task in tasks:
            try:
                image = fetcher.load(task, config.image_value)
                superpixels = context.superpixels.get(image)
                rng = np.random.default_rng([s.seed, project, task["id"]])
                regions = colour_regions(image, superpixels, s.start_regions, rng, no_class)
            except (ImageFetchError, LabelStudioError, TypeError, ValueError) as exc:
                log.warning("project %d task %s: asked whole, no start regions: %s", project,
                            task["id"], exc)
                continue
            query = Query(task["id"], 1.0, image.shape[:2], superpixels, regions,
                          int(superpixels.max()) + 1)
            predictions[task["id"]] = query_prediction(query, config, title)
            made.append(QueryRecord.of(query, 0, context.slic.key()))
    finally:
        fetcher.close()
    context.state.add_queries(project, made)
    return predictions


def seed_in_background(context: ServiceContext, project: int) -> threading.Thread:
    """:func:`seed` in a daemon thread with its own client (newly imported tasks: the webhook
    answers at once); a failure is logged, never raised."""
    def run() -> None:
        try:
            with context.client_factory() as client:
                seed(context, client, project)
        except Exception:  # noqa: BLE001 - a background thread must not die silently
            log.exception("project %d: seeding new tasks failed", project)

    thread = threading.Thread(target=run, daemon=True, name=f"dbsal-seed-{project}")
    thread.start()
    return thread
