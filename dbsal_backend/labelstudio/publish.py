"""Predictions into Label Studio: what the annotators see, and in which order.

Each step replaces the backend's predictions of a project (all of its model version, deleted in
one request) with the new ones, and makes sure the project's model version is the backend's, so
that Label Studio's "Uncertainty sampling" serves these tasks, lowest confidence first. Tasks
without a prediction are left for Label Studio to ask about when someone opens them (regions
on demand, ``/predict``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .client import LabelStudioClient

__all__ = ["add", "replace"]

log = logging.getLogger(__name__)


def replace(client: LabelStudioClient, project: int, title: str,
            predictions: Mapping[int, dict[str, Any]]) -> None:
    """Delete the project's ``title`` predictions, push ``predictions`` (task id -> prediction)
    and set the project's model version to ``title`` when it differs."""
    client.delete_predictions(project, title)
    add(client, project, title, predictions)


def add(client: LabelStudioClient, project: int, title: str,
        predictions: Mapping[int, dict[str, Any]]) -> None:
    """Push ``predictions`` (task id -> prediction) without deleting others."""
    if not predictions:
        return
    client.push_predictions(project, [{"task": task, **p} for task, p in predictions.items()])
    if client.get_project(project).get("model_version") != title:
        client.update_project(project, model_version=title)
        log.info("project %d: model version set to %r", project, title)
