"""The Label Studio ML backend model: a thin ``LabelStudioMLBase`` over ``dbsal_backend``.

Everything lives in the process-wide :class:`dbsal_backend.server.runtime.Runtime` (settings, state,
service, training scheduler); a ``DBSALModel`` is a cheap handle on one project that the HTTP
layer (``dbsal_backend.server.app``) builds per request.
"""

from __future__ import annotations

from typing import Any

from label_studio_ml.model import LabelStudioMLBase

from dbsal_backend.server.runtime import get_runtime


class DBSALModel(LabelStudioMLBase):
    """DBSAL for one Label Studio project.

    Parameters
    ----------
    project : int
        The Label Studio project id.
    """

    def __init__(self, project: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.runtime = get_runtime()

    def setup(self, schema: str) -> str:
        """Label Studio connects: check the label config, confirm the project in the background;
        returns the model version."""
        return self.runtime.service.setup(self.project, schema)

    def predict(self, tasks: list[dict], **kwargs: Any) -> list[dict]:
        """One prediction per task, in order."""
        return self.predict_with_version(tasks)[0]

    def predict_with_version(self, tasks: list[dict]) -> tuple[list[dict], str]:
        """The predictions and the model version they carry."""
        return self.runtime.service.predict(self.project, tasks)

    def fit(self, event: str = "START_TRAINING", task: int | None = None,
            **kwargs: Any) -> str:
        """A Label Studio event; training runs in the background. Returns what the scheduler
        did (started, queued, counted or ignored)."""
        return self.runtime.event(self.project, event, task)

    def status(self) -> dict[str, Any]:
        """What ``/status`` shows."""
        return self.runtime.status(self.project)
