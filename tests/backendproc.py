"""The backend as a real server process, and Label Studio projects, for the e2e and UI suites.

:class:`Backend` runs ``python _wsgi.py`` (gunicorn) with small CPU settings and its log in a
file; ``failure_logs()`` is attached to failing reports by ``tests/conftest.py``. The helpers
make projects of synthetic images, label them through the SDK and read predictions back.
"""

from __future__ import annotations

import atexit
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from lsserver import LabelStudioServer, free_port
from PIL import Image

from dbsal_backend.labelstudio.polygons import polygon_to_mask
from dbsal_backend.labelstudio.rle import mask_to_rle, rle_to_mask

REPO = Path(__file__).resolve().parents[1]
TITLE = "dbsal"
CLASSES = ("background", "red", "blue")
COLOURS = {1: (220, 40, 40), 2: (40, 60, 220)}
_LABELS = "".join(f'<Label value="{c}"/>' for c in CLASSES)
#: Brush only: the backend's regions are brush masks.
BRUSH_CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
                + _LABELS + "</BrushLabels></View>")
#: Brush and polygons (what the README recommends): the backend's regions are polygons.
LABEL_CONFIG = BRUSH_CONFIG.replace(
    "</View>", f'<PolygonLabels name="poly" toName="image">{_LABELS}</PolygonLabels></View>')
SIZE = 64
SETTINGS = {
    "DBSAL_ARCH": "unet", "DBSAL_PRETRAINED": "false", "DBSAL_FIRST_EPOCHS": "3",
    "DBSAL_EPOCHS": "2", "DBSAL_INITIAL_BATCH": "3", "DBSAL_STEP_SIZE": "2",
    "DBSAL_N_SEGMENTS": "30", "DBSAL_MC_SAMPLES": "3", "DBSAL_MAX_SIDE": str(SIZE),
    "DBSAL_TRAIN_AFTER": "3", "DBSAL_DEVICE": "cpu",
}
START_TIMEOUT = 180.0  # importing torch on two busy cores
RUN_TIMEOUT = 300.0  # one training run and step, in a child process
EVENT_TIMEOUT = 60.0
POLL = 0.3


# ---------------------------------------------------------------------------- data


def synthetic_scene(k: int, height: int = SIZE, width: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A noisy grey image with a red and a blue square, and its label map."""
    rng = np.random.default_rng(100 + k)
    image = rng.integers(90, 140, size=(height, width, 3)).astype(np.uint8)
    labels = np.zeros((height, width), np.uint8)
    for cls in (1, 2):
        side = int(rng.integers(min(height, width) // 4, min(height, width) * 2 // 5))
        top, left = rng.integers(0, height - side), rng.integers(0, width - side)
        labels[top:top + side, left:left + side] = cls
    for cls, colour in COLOURS.items():
        image[labels == cls] = colour
    return image, labels


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def brush(mask: np.ndarray, label: str) -> dict[str, Any]:
    """One BrushLabels result, as the editor stores it."""
    return {"from_name": "tag", "to_name": "image", "type": "brushlabels",
            "original_width": mask.shape[1], "original_height": mask.shape[0],
            "image_rotation": 0,
            "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]}}


def annotation_result(truth: np.ndarray, where: np.ndarray | None = None) -> list[dict]:
    """The ground truth as brush results, one per class present (only inside ``where``)."""
    inside = np.ones(truth.shape, bool) if where is None else where
    return [brush((truth == c) & inside, label) for c, label in enumerate(CLASSES)
            if ((truth == c) & inside).any()]


def region_masks(prediction: dict) -> list[np.ndarray]:
    """Each result's mask (brush RLE or polygon)."""
    return [rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"])
            if r["type"] == "brushlabels" else
            polygon_to_mask(r["value"]["points"], r["original_height"], r["original_width"])
            for r in prediction["result"]]


def dominant_answer(prediction: dict, truth: np.ndarray,
                    classes: Sequence[str] = CLASSES) -> list[dict]:
    """A prediction's regions answered as a person answers a start's (Cai et al.): each given
    the class that covers most of it (``truth``: class per pixel, 255 unknown), as the editor
    stores it; a region with no known pixel is left as it is."""
    out = []
    for result, mask in zip(prediction["result"], region_masks(prediction)):
        known = truth[mask & (truth != 255)]
        value = dict(result["value"])
        if known.size:
            kind = "polygonlabels" if result["type"] == "polygonlabels" else "brushlabels"
            value[kind] = [classes[int(np.bincount(known).argmax())]]
        out.append(dict(result, value=value))
    return out


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             details: Callable[[], str] = lambda: "", interval: float = POLL) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}. {details()}",
                        pytrace=False)
        time.sleep(interval)


# ---------------------------------------------------------------------------- the backend


class StatusPolling:
    """``/status`` reads and waits, for anything with ``url``, ``auth`` and ``log_tail()`` (the
    backend as a process here, or in a container)."""

    url: str
    auth: tuple[str, str] | None

    def log_tail(self, n_chars: int = 6000) -> str:
        raise NotImplementedError

    def status(self, project: int) -> dict | None:
        """``GET /status?project=P``; None while the project is not connected (404)."""
        response = httpx.get(f"{self.url}/status", params={"project": project}, auth=self.auth,
                             timeout=30)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def wait_status(self, project: int, condition: Callable[[dict], bool], what: str,
                    timeout: float = EVENT_TIMEOUT, seen: list | None = None,
                    allow_error: bool = False) -> dict:
        """Poll ``/status`` until ``condition(status)``; every status read goes into ``seen``."""
        last: dict[str, Any] = {}

        def check() -> dict | None:
            status = self.status(project) or {}
            last["status"] = status
            if seen is not None:
                seen.append(status)
            if status.get("last_error") and not allow_error:
                pytest.fail(f"backend reports an error while waiting for {what}: "
                            f"{status['last_error']}\n{self.log_tail()}", pytrace=False)
            return status if status and condition(status) else None

        return wait_for(check, timeout, what,
                        lambda: f"last status: {last.get('status')}\n{self.log_tail()}")


@dataclass
class Backend(StatusPolling):
    """The backend as a subprocess (gunicorn), its log in a file; ``failure_logs()`` is
    attached to failing reports by ``tests/conftest.py``."""

    name: str
    ls: LabelStudioServer
    api_key: str
    model_dir: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    auth: tuple[str, str] | None = None
    settings: dict[str, str] = field(default_factory=lambda: dict(SETTINGS))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DBSAL_", "LABEL_STUDIO_", "BASIC_AUTH_"))
               and k not in ("MODEL_DIR", "HOST", "PORT", "LOG_LEVEL")}
        env.update(self.settings, LABEL_STUDIO_URL=self.ls.url, LABEL_STUDIO_API_KEY=self.api_key,
                   MODEL_DIR=str(self.model_dir), PYTHONUNBUFFERED="1", **self.extra_env)
        if self.auth:
            env.update(BASIC_AUTH_USER=self.auth[0], BASIC_AUTH_PASS=self.auth[1])
        with open(self.log_path, "ab") as log:  # restarts append to the same file
            self.process = subprocess.Popen(
                [sys.executable, "_wsgi.py", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)

        def healthy() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"backend {self.name} exited with code {self.process.returncode} "
                            f"during start-up:\n{self.log_tail()}", pytrace=False)
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, START_TIMEOUT, f"backend {self.name} to answer /health", self.log_tail,
                 interval=0.5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process group (idempotent); SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n_chars: int = 6000) -> str:
        return f"backend {self.name} log {self.log_path}:\n{self.log_text()[-n_chars:]}"

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"backend {self.name} log (tail)", self.log_text()[-8000:]),
                ("Label Studio log (tail)", self.ls.log_tail(3000))]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", auth=self.auth, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", auth=self.auth, timeout=100, **kwargs)



def start_backend(name: str, ls: LabelStudioServer, api_key: str, tmp: Path,
                  auth: tuple[str, str] | None = None, **extra_env: str) -> Backend:
    backend = Backend(name, ls, api_key, tmp / f"models-{name}", tmp / f"backend-{name}.log",
                      extra_env=extra_env, auth=auth)
    try:
        backend.start()
    except BaseException:
        backend.stop()
        raise
    return backend


def module_backend(name: str, **settings: str):
    """A module-scoped fixture: the backend ``name`` with the admin's legacy token, no basic
    auth, and ``settings`` (``DBSAL_*`` variables) over :data:`SETTINGS`; stopped after the
    module. Use as ``backend = module_backend("ui", DBSAL_STEP_SIZE="2")``."""
    @pytest.fixture(scope="module")
    def backend(ls: LabelStudioServer, tmp_path_factory) -> Iterator[Backend]:
        b = start_backend(name, ls, ls.token, tmp_path_factory.mktemp(f"backend-{name}"),
                          **settings)
        yield b
        b.stop()
    return backend


# ---------------------------------------------------------------------------- Label Studio


@dataclass
class Project:
    id: int
    images: dict[int, np.ndarray]
    truth: dict[int, np.ndarray]


def make_project(ls: LabelStudioServer, sdk: LabelStudio, title: str, n_images: int,
                 first: int = 0, height: int = SIZE, width: int = SIZE,
                 config: str = LABEL_CONFIG) -> Project:
    project = sdk.projects.create(title=title, label_config=config).id
    scenes = {f"scene{k}.png": synthetic_scene(k, height, width)
              for k in range(first, first + n_images)}
    ids = ls.upload_files(project, {name: png_bytes(im) for name, (im, _) in scenes.items()})
    return Project(project, {ids[n]: im for n, (im, _) in scenes.items()},
                   {ids[n]: truth for n, (_, truth) in scenes.items()})


def ours(sdk: LabelStudio, task: int) -> list[dict]:
    """The backend's predictions (model version = the title) of one task, as dicts."""
    return [p.model_dump(mode="json") for p in sdk.predictions.list(task=task)
            if p.model_version == TITLE]


def next_task(ls: LabelStudioServer, project: int) -> dict:
    """What "Label All Tasks" serves: the project's next task (its sampling decides)."""
    response = httpx.get(f"{ls.url}/api/projects/{project}/next/", headers=ls.headers, timeout=120)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def connect(sdk: LabelStudio, backend: Backend, project: Project) -> Any:
    kwargs: dict[str, Any] = {}
    if backend.auth:
        kwargs = {"auth_method": "BASIC_AUTH", "basic_auth_user": backend.auth[0],
                  "basic_auth_pass": backend.auth[1]}
    ml = sdk.ml.create(url=backend.url, project=project.id, title=TITLE, **kwargs)
    backend.wait_status(project.id, lambda s: s["seed_batch"], "the project to be confirmed and "
                        "seeded")
    return ml




def tasks_as_sent(ls: LabelStudioServer, project: int) -> dict[int, dict]:
    """The project's tasks as Label Studio sends them to /predict (``id``, ``project``,
    ``data``), read without making it ask for predictions."""
    response = httpx.get(f"{ls.url}/api/projects/{project}/tasks/", headers=ls.headers,
                         params={"page_size": 1000}, timeout=60)
    response.raise_for_status()
    return {t["id"]: {"id": t["id"], "project": project, "data": t["data"]}
            for t in response.json()}
