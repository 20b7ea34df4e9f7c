"""The seed batch: before any model, whole images first in the labeling queue.

A random batch of ``DBSAL_INITIAL_BATCH`` tasks, less the tasks people have labeled already (none
when that many are), each with an empty prediction scored 0, so that Label Studio's uncertainty
sampling serves them first; the batch is kept while its tasks are unlabeled.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ..labelstudio import publish
from .context import ServiceContext
from ..labelstudio.client import LabelStudioClient
from ..labelstudio.predictions import empty_prediction

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
    if tasks is None:
        tasks = list(client.tasks(project))
    ids = sorted(t["id"] for t in tasks if not t["total_annotations"])
    annotated = len(tasks) - len(ids)
    wanted = max(0, s.initial_batch - annotated)
    batch = [t for t in record.seed_batch if t in set(ids)][:wanted]
    if not batch and ids and wanted:
        rng = np.random.default_rng([s.seed, project])
        batch = sorted(int(i) for i in rng.choice(ids, min(wanted, len(ids)), replace=False))
    title = context.title(record)
    publish.replace(client, project, title, {t: empty_prediction(title, 0.0) for t in batch})
    context.state.update(project, seed_batch=batch)
    log.info("project %d: seed batch of %d whole images first in the queue (%d tasks labeled "
             "already)", project, len(batch), annotated)
    return {"step": 0, "seed_batch": batch, "annotated": annotated}


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
