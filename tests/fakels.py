"""An in-memory stand-in for Label Studio, for tests of the service and the HTTP layer.

:class:`FakeLabelStudio` holds projects, tasks, annotations, predictions, ML-backend rows and
webhooks in dicts, and serves task images over real HTTP on 127.0.0.1 (so the backend's image
fetcher runs for real). :meth:`FakeLabelStudio.client` returns an object with the methods of
``dbsal_backend.labelstudio.client.LabelStudioClient`` the backend calls. The real server is exercised by
the e2e suites.
"""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

from dbsal_backend.labelstudio.label_config import parse_label_config
from dbsal_backend.labelstudio.annotations import label_map_to_results, select_annotations
from dbsal_backend.labelstudio.client import LabelStudioError

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Background"/><Label value="Square"/>
  </BrushLabels>
</View>"""
LABELS = ["Background", "Square"]
BACKEND_URL = "http://backend.test:9090"
TOKEN = "0123456789abcdef0123456789abcdef01234567"


def scene(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A dark noisy image with a red square, and its label map (1 inside the square)."""
    img = np.full((size, size, 3), 40, np.uint8)
    lbl = np.zeros((size, size), np.uint8)
    y, x = rng.integers(4, size - 20, 2)
    img[y:y + 16, x:x + 16] = (220, 60, 60)
    lbl[y:y + 16, x:x + 16] = 1
    img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
    return img, lbl


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def brush_results(label_map: np.ndarray, only: np.ndarray | None = None) -> list[dict]:
    """Brush results painting ``label_map`` (optionally only where ``only`` is True)."""
    return label_map_to_results(label_map, parse_label_config(CONFIG), only=only)


class FakeLabelStudio:
    """Projects of synthetic square images, served by a local HTTP server."""

    def __init__(self, n_tasks: int = 8, seed: int = 0, project: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.images: dict[int, np.ndarray] = {}
        self.truth: dict[int, np.ndarray] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.ml: dict[int, list[dict[str, Any]]] = {}
        self.hooks: dict[int, list[dict[str, Any]]] = {}
        self.predictions: dict[int, list[dict[str, Any]]] = {}
        self.image_requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.add_project(project)
        for _ in range(n_tasks):
            self.add_task(project, *scene(rng))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- data -------------------------------------------------------------------------------
    def add_project(self, project: int, connected: bool = True) -> None:
        self.projects[project] = {"id": project, "label_config": CONFIG, "model_version": "",
                                  "sampling": "Sequential sampling"}
        self.ml[project] = ([{"id": project, "url": BACKEND_URL, "title": "dbsal"}]
                            if connected else [])
        self.hooks[project] = [{"id": 100 + project, "url": BACKEND_URL + "/webhook",
                                "headers": {}}]

    def add_task(self, project: int, image: np.ndarray, truth: np.ndarray) -> int:
        tid = len(self.tasks) + 1
        self.images[tid], self.truth[tid] = image, truth
        self.tasks[tid] = {"id": tid, "project": project,
                           "data": {"image": f"/data/upload/{tid}.png"}, "annotations": []}
        return tid

    def annotate(self, tid: int, results: list[dict], cancelled: bool = False,
                 when: str = "2026-11-25T10:00:00Z") -> None:
        self.tasks[tid]["annotations"].append({
            "id": len(self.tasks[tid]["annotations"]) + 100 * tid, "result": results,
            "was_cancelled": cancelled, "created_at": when, "updated_at": when})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def client(self) -> FakeClient:
        return FakeClient(self)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        ls = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                ls.image_requests.append((self.path, self.headers.get("Authorization")))
                name = self.path.rsplit("/", 1)[-1]
                tid = int(name.split(".")[0]) if name.split(".")[0].isdigit() else -1
                if self.headers.get("Authorization") != f"Token {TOKEN}" or tid not in ls.images:
                    self.send_response(401 if tid in ls.images else 404)
                    self.end_headers()
                    return
                body = png(ls.images[tid])
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


class FakeClient:
    """The methods of ``LabelStudioClient`` the backend calls, over a :class:`FakeLabelStudio`."""

    def __init__(self, ls: FakeLabelStudio) -> None:
        self.ls = ls
        self.url = ls.url

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def auth_header(self, renew: bool = False) -> dict[str, str]:
        return {"Authorization": f"Token {TOKEN}"}

    def _project(self, project: int) -> dict[str, Any]:
        if project not in self.ls.projects:
            raise LabelStudioError(f"project {project} not found", 404)
        return self.ls.projects[project]

    def get_project(self, project: int) -> dict[str, Any]:
        return dict(self._project(project))

    def update_project(self, project: int, **fields: Any) -> None:
        self._project(project).update(fields)

    def ml_backends(self, project: int) -> list[dict[str, Any]]:
        self._project(project)
        return [dict(m) for m in self.ls.ml[project]]

    def webhooks(self, project: int) -> list[dict[str, Any]]:
        return [dict(h) for h in self.ls.hooks.get(project, [])]

    def set_webhook_headers(self, webhook: int, headers: dict[str, str]) -> None:
        for hooks in self.ls.hooks.values():
            for hook in hooks:
                if hook["id"] == webhook:
                    hook["headers"] = dict(headers)

    def tasks(self, project: int, page_size: int = 100):
        self._project(project)
        for task in list(self.ls.tasks.values()):
            if task["project"] == project:
                yield {"id": task["id"], "data": dict(task["data"]),
                       "total_annotations": sum(not a["was_cancelled"]
                                                for a in task["annotations"])}

    def tasks_by_id(self, project: int, task_ids: list[int]) -> dict[int, dict[str, Any]]:
        self._project(project)
        return {t: {"id": t, "data": dict(self.ls.tasks[t]["data"])} for t in task_ids
                if t in self.ls.tasks and self.ls.tasks[t]["project"] == project}

    def annotations(self, task_ids: list[int]) -> dict[int, dict[str, Any]]:
        return select_annotations({t: self.ls.tasks[t]["annotations"] for t in task_ids})

    def push_predictions(self, project: int, predictions: list[dict]) -> int:
        with self.ls.lock:
            for p in predictions:
                assert 0.0 <= p["score"] <= 1.0
                assert isinstance(p["model_version"], str) and p["model_version"]
                self.ls.predictions.setdefault(p["task"], []).append(p)
        return len(predictions)

    def delete_predictions(self, project: int, model_version: str) -> None:
        with self.ls.lock:
            for task, found in list(self.ls.predictions.items()):
                if self.ls.tasks[task]["project"] == project:
                    self.ls.predictions[task] = [p for p in found
                                                 if p["model_version"] != model_version]
