"""Regions on demand: Label Studio opens a task that has no prediction and asks ``/predict``.

Each task gets the regions of its uncertain superpixels, computed now with the serving model
(the step's own code, for one image), or, before the first model or once the labeling budget is
spent, an empty prediction scored 0 (label the whole image). The task data is read from Label
Studio (one request for the batch, in a way that does not make Label Studio call ``/predict``
again), not taken from the request: a task of another project, or one Label Studio does not
know, gets no regions; images come from Label Studio or an allowed origin only (:mod:`.images`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ..engine.active import Candidate, query_candidates
from .context import ServiceContext
from ..labelstudio.images import ImageFetchError
from ..labelstudio.client import LabelStudioError
from ..labelstudio.predictions import empty_prediction, query_prediction
from .state import QueryRecord

__all__ = ["predict"]

log = logging.getLogger(__name__)


def predict(context: ServiceContext, project: int,
            tasks: list[dict]) -> tuple[list[dict], str]:
    """One prediction per task, in order, and the model version they carry."""
    record = context.require(project)
    config = context.config(record)
    title = context.title(record)
    served = context.served(record, config)
    if served is None or context.budget.exhausted(record.spent):
        return [empty_prediction(title, 0.0) for _ in tasks], title
    out = []
    with context.client_factory() as client:
        fetcher = context.fetcher(client)
        try:
            scorer = context.scorer(served, len(config.labels))
            policy = replace(context.policy(config), images=1, scope="image")
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
                                         context.superpixels.get, policy, len(config.labels),
                                         labels_of=scorer.prelabels)[0]
                out.append(query_prediction(query, config, title))
                made.append(QueryRecord.of(query, record.al_step, context.slic.key()))
            context.state.add_queries(project, made)
        finally:
            fetcher.close()
    return out, title
