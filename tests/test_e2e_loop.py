"""The whole active-learning loop against a real Label Studio 1.23.2 server.

One Label Studio server (``tests/lsserver.py``) and the backend as a real HTTP server
(``python _wsgi.py --port P`` in a subprocess, small CPU settings) play the loop as a user would:
connect the backend to a project of synthetic images, see the seed batch queued first, label it
(Label Studio's webhooks start training), get superpixel queries as predictions with the queue tab
ordered by uncertainty, answer the queried regions, press "Start Training", retrieve predictions,
restart the backend, and run a second backend with a personal access token.

The steps are module-scoped fixtures that build on each other (``project`` -> ``connected`` ->
``seeded`` -> ``step1`` -> ``step2`` -> ``retrieved`` -> ``restarted``); the tests, in file
order, check each step. Every wait is bounded and fails with the backend's status; the backend
and server logs are attached to failing reports (see ``failure_logs`` in ``conftest.py``).
"""

from __future__ import annotations

import atexit
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from lsserver import LabelStudioServer, free_port, label_studio_server  # noqa: F401
from PIL import Image

from dbsal_backend.ls_client import LabelStudioClient
from dbsal_backend.rle import mask_to_rle, rle_to_mask

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TITLE = "dbsal"
QUEUE_TAB = "DBSAL queue"
CLASSES = ("background", "red", "blue")
COLOURS = {1: (220, 40, 40), 2: (40, 60, 220)}
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    + "".join(f'<Label value="{c}"/>' for c in CLASSES)
    + "</BrushLabels></View>"
)
WRONG_CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
    '<Label value="red"/></RectangleLabels></View>'
)
SIZE = 64
N_IMAGES = 10
INITIAL_BATCH = 3
STEP_SIZE = 2
TRAIN_AFTER = 3
SETTINGS = {
    "DBSAL_ARCH": "unet",
    "DBSAL_PRETRAINED": "false",
    "DBSAL_EPOCHS": "3",
    "DBSAL_INITIAL_BATCH": str(INITIAL_BATCH),
    "DBSAL_STEP_SIZE": str(STEP_SIZE),
    "DBSAL_N_SEGMENTS": "30",
    "DBSAL_MC_SAMPLES": "3",
    "DBSAL_MAX_SIDE": str(SIZE),
    "DBSAL_TRAIN_AFTER": str(TRAIN_AFTER),
    "DBSAL_DEVICE": "cpu",
}
START_TIMEOUT = 180.0  # importing torch on two busy cores
RUN_TIMEOUT = 240.0  # one training run and AL step
EVENT_TIMEOUT = 60.0  # a webhook to arrive, a seed batch to appear
POLL = 0.2


# ---------------------------------------------------------------------------- data


def synthetic_scene(k: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy grey ``SIZE x SIZE`` image with a red and a blue square, and its label map."""
    rng = np.random.default_rng(100 + k)
    image = rng.integers(90, 140, size=(SIZE, SIZE, 3)).astype(np.uint8)
    labels = np.zeros((SIZE, SIZE), np.uint8)
    for cls in (1, 2):
        side = int(rng.integers(14, 26))
        top, left = rng.integers(0, SIZE - side, size=2)
        labels[top : top + side, left : left + side] = cls
    for cls, colour in COLOURS.items():
        image[labels == cls] = colour
    return image, labels


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def brush(mask: np.ndarray, label: str) -> dict[str, Any]:
    """One BrushLabels result, as the editor stores it."""
    return {
        "from_name": "tag",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": mask.shape[1],
        "original_height": mask.shape[0],
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
    }


def annotation_result(truth: np.ndarray, where: np.ndarray | None = None) -> list[dict]:
    """The ground truth as brush results, one per class present (only inside ``where``)."""
    inside = np.ones(truth.shape, bool) if where is None else where
    return [brush((truth == c) & inside, label) for c, label in enumerate(CLASSES)
            if ((truth == c) & inside).any()]


def region_masks(prediction: dict) -> list[np.ndarray]:
    """The decoded brush regions of a prediction."""
    return [rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"])
            for r in prediction["result"]]


# ---------------------------------------------------------------------------- waiting


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


@dataclass
class Backend:
    """The backend as a subprocess: ``python _wsgi.py --port PORT`` with its log in a file.

    ``failure_logs()`` is attached to failing reports by ``tests/conftest.py``.
    """

    name: str
    ls: LabelStudioServer
    api_key: str
    model_dir: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process and wait until ``/health`` answers 200."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DBSAL_", "LABEL_STUDIO_"))
               and k not in ("MODEL_DIR", "HOST", "PORT", "LOG_LEVEL")}
        env.update(SETTINGS, LABEL_STUDIO_URL=self.ls.url, LABEL_STUDIO_API_KEY=self.api_key,
                   MODEL_DIR=str(self.model_dir), HOST="127.0.0.1", PYTHONUNBUFFERED="1",
                   **self.extra_env)
        with open(self.log_path, "ab") as log:  # restarts append to the same file
            self.process = subprocess.Popen(
                [sys.executable, "_wsgi.py", "--port", str(self.port)], cwd=REPO, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        atexit.register(self.stop)  # also when pytest is interrupted

        def healthy() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"backend {self.name} exited with code {self.process.returncode} "
                            f"during start-up:\n{self.log_tail()}", pytrace=False)
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, START_TIMEOUT, f"backend {self.name} to answer /health",
                 self.log_tail, interval=0.5)

    def stop(self) -> None:
        """Stop the process group (idempotent): SIGTERM, then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n_chars: int = 6000) -> str:
        return f"backend {self.name} log {self.log_path}:\n{self.log_text()[-n_chars:]}"

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"backend {self.name} log (tail)", self.log_text()[-8000:]),
                ("Label Studio log (tail)", self.ls.log_tail(3000))]

    def status(self, project: int) -> dict | None:
        """``GET /status?project=P``; None for an unknown project (404)."""
        response = httpx.get(f"{self.url}/status", params={"project": project}, timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def predict(self, project: int, tasks: list[dict]) -> dict:
        """``POST /predict`` as Label Studio sends it."""
        response = httpx.post(f"{self.url}/predict", timeout=100, json={
            "tasks": tasks, "project": f"{project}.1700000000", "label_config": LABEL_CONFIG,
            "params": {"login": None, "password": None, "context": None}})
        assert response.status_code == 200, response.text[:1000]
        return response.json()

    def wait_status(self, project: int, condition: Callable[[dict], bool], what: str,
                    timeout: float = EVENT_TIMEOUT, seen: list | None = None) -> dict:
        """Poll ``/status`` until ``condition(status)``; every status read goes into ``seen``."""
        last: dict[str, Any] = {}

        def check() -> dict | None:
            status = self.status(project) or {}
            last["status"] = status
            if seen is not None:
                seen.append(status)
            if status.get("last_error"):
                pytest.fail(f"backend reports an error while waiting for {what}: "
                            f"{status['last_error']}\n{self.log_tail()}", pytrace=False)
            return status if status and condition(status) else None

        return wait_for(check, timeout, what,
                        lambda: f"last status: {last.get('status')}\n{self.log_tail()}")


def start_backend(name: str, ls: LabelStudioServer, api_key: str, tmp: Path,
                  **extra_env: str) -> Backend:
    backend = Backend(name, ls, api_key, tmp / f"models-{name}", tmp / f"backend-{name}.log",
                      extra_env=extra_env)
    try:
        backend.start()
    except BaseException:
        backend.stop()
        raise
    return backend


# ---------------------------------------------------------------------------- Label Studio


def our_predictions(sdk: LabelStudio, task: int) -> list[dict]:
    """The backend's predictions (model version = the title) of one task, as dicts."""
    return [p.model_dump(mode="json") for p in sdk.predictions.list(task=task)
            if p.model_version == TITLE]


def one_prediction(sdk: LabelStudio, task: int) -> dict:
    found = our_predictions(sdk, task)
    assert len(found) == 1, f"task {task}: expected one {TITLE!r} prediction, got {len(found)}"
    return found[0]


def queue_tab(sdk: LabelStudio, project: int) -> int | None:
    """Id of the project's queue tab, if it exists."""
    for view in sdk.views.list(project=project):
        if (view.data or {}).get("title") == QUEUE_TAB:
            return view.id
    return None


def check_queue_order(sdk: LabelStudio, client: LabelStudioClient, project: int, view: int,
                      unlabeled: set[int], queried: set[int]) -> dict[int, float]:
    """The tab lists exactly the unlabeled tasks by score, highest first, queried ones first."""
    order = client.queue(project, view)
    assert sorted(order) == sorted(unlabeled), "the queue tab must list exactly the unlabeled tasks"
    scores = {t: one_prediction(sdk, t)["score"] for t in order}
    listed = [scores[t] for t in order]
    assert listed == sorted(listed, reverse=True), f"tab not ordered by score: {listed}"
    assert all(0.0 <= s <= 1.0 for s in listed)
    rest = [scores[t] for t in order if t not in queried]
    assert min(scores[t] for t in queried) >= max(rest, default=0.0), \
        "queried tasks must be the most uncertain"
    k = len(queried)
    if k < len(order) and listed[k - 1] > listed[k]:  # no tie at the boundary
        assert set(order[:k]) == queried, f"queue {order} should start with {sorted(queried)}"
    return scores


@dataclass
class Project:
    id: int
    images: dict[int, np.ndarray]  # task id -> uploaded image
    truth: dict[int, np.ndarray]  # task id -> label map


def make_project(ls: LabelStudioServer, sdk: LabelStudio, title: str, n_images: int,
                 first: int = 0) -> Project:
    project = sdk.projects.create(title=title, label_config=LABEL_CONFIG).id
    scenes = {f"scene{k}.png": synthetic_scene(k) for k in range(first, first + n_images)}
    ids = ls.upload_files(project, {name: png_bytes(im) for name, (im, _) in scenes.items()})
    return Project(project, {ids[name]: image for name, (image, _) in scenes.items()},
                   {ids[name]: truth for name, (_, truth) in scenes.items()})


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ls(label_studio_server: LabelStudioServer) -> LabelStudioServer:  # noqa: F811
    return label_studio_server


@pytest.fixture(scope="module")
def sdk(ls: LabelStudioServer) -> LabelStudio:
    return LabelStudio(base_url=ls.url, api_key=ls.token)


@pytest.fixture(scope="module")
def client(ls: LabelStudioServer, tmp_path_factory) -> Iterator[LabelStudioClient]:
    with LabelStudioClient(ls.url, ls.token, tmp_path_factory.mktemp("client-cache")) as c:
        yield c


@pytest.fixture(scope="module")
def backend(ls: LabelStudioServer, tmp_path_factory) -> Iterator[Backend]:
    """The backend with the admin's legacy token."""
    b = start_backend("legacy", ls, ls.token, tmp_path_factory.mktemp("backend"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def project(ls, sdk) -> Project:
    """Step 1: a brush project with ten uploaded 64x64 images."""
    return make_project(ls, sdk, "dbsal e2e loop", N_IMAGES)


@pytest.fixture(scope="module")
def connected(sdk, backend, project) -> dict:
    """Step 2: the backend connected to the project."""
    before = backend.status(project.id)
    ml = sdk.ml.create(url=backend.url, project=project.id, title=TITLE)
    return {"ml": ml, "status_before": before}


@pytest.fixture(scope="module")
def seeded(sdk, client, backend, project, connected) -> dict:
    """Step 3: the seed batch in the queue tab."""
    def ready() -> tuple[int, list[int]] | None:
        view = queue_tab(sdk, project.id)
        if view is None:
            return None
        order = client.queue(project.id, view)
        status = backend.status(project.id) or {}
        if len(order) < N_IMAGES or not status.get("service", {}).get("seed_batch"):
            return None
        return view, order

    view, order = wait_for(ready, EVENT_TIMEOUT, "the seed batch in the queue tab",
                           backend.log_tail)
    scores = {t: one_prediction(sdk, t)["score"] for t in order}
    return {"view": view, "order": order, "scores": scores,
            "seed": sorted(t for t, s in scores.items() if s == 1.0)}


@pytest.fixture(scope="module")
def step1(sdk, client, backend, project, seeded) -> dict:
    """Step 4: the annotator labels the seed batch; the third webhook starts a run."""
    seen: list[dict] = []
    counted = []
    for k, task in enumerate(seeded["seed"], start=1):
        sdk.annotations.create(id=task, result=annotation_result(project.truth[task]))
        if k < TRAIN_AFTER:
            counted.append(backend.wait_status(
                project.id, lambda s, k=k: s["annotations_since_run"] == k,
                f"ANNOTATION_CREATED webhook {k} to be counted"))
    status = backend.wait_status(project.id,
                                 lambda s: s["al_step"] == 1 and s["training_state"] == "idle",
                                 "the first training run and AL step", RUN_TIMEOUT, seen)
    unlabeled = sorted(set(project.truth) - set(seeded["seed"]))
    predictions = {t: one_prediction(sdk, t) for t in unlabeled}
    return {"seen": seen, "counted": counted, "status": status, "predictions": predictions,
            "queried": sorted(t for t, p in predictions.items() if p["result"])}


@pytest.fixture(scope="module")
def step2(sdk, backend, project, connected, seeded, step1) -> dict:
    """Step 6: the queried regions answered, then "Start Training"."""
    for task in step1["queried"]:
        inside = np.logical_or.reduce(region_masks(step1["predictions"][task]))
        sdk.annotations.create(id=task, result=annotation_result(project.truth[task], inside))
    counted = backend.wait_status(
        project.id, lambda s: s["annotations_since_run"] == len(step1["queried"]),
        "the answers' webhooks to be counted")
    sdk.ml.train(id=connected["ml"].id)
    status = backend.wait_status(project.id,
                                 lambda s: s["al_step"] == 2 and s["training_state"] == "idle",
                                 "the run started by START_TRAINING", RUN_TIMEOUT)
    labeled = set(seeded["seed"]) | set(step1["queried"])
    return {"counted": counted, "status": status, "labeled": labeled,
            "unlabeled": sorted(set(project.truth) - labeled)}


@pytest.fixture(scope="module")
def retrieved(sdk, backend, project, step2) -> dict:
    """Step 7: the Data Manager action "Retrieve predictions" on every task."""
    before = {t: our_predictions(sdk, t) for t in project.truth}
    requests = backend.log_text().count('"POST /predict HTTP/1.1" 200')
    sdk.actions.create(id="retrieve_tasks_predictions", project=project.id,
                       selected_items={"all": True, "excluded": []})
    after = {t: our_predictions(sdk, t) for t in project.truth}
    return {"before": before, "after": after,
            "requests": backend.log_text().count('"POST /predict HTTP/1.1" 200') - requests}


@pytest.fixture(scope="module")
def restarted(backend, project, retrieved) -> dict:
    """Step 8: the backend restarted on the same MODEL_DIR and port."""
    before = backend.status(project.id)
    backend.stop()
    assert backend.process.returncode is not None
    backend.start()
    return {"before": before, "after": backend.status(project.id)}


@pytest.fixture(scope="module")
def pat_run(ls, sdk, client, tmp_path_factory) -> Iterator[dict]:
    """Step 9: a second backend with a personal access token, on a second project."""
    pat = ls.personal_access_token()
    b = start_backend("pat", ls, pat, tmp_path_factory.mktemp("backend-pat"), LOG_LEVEL="DEBUG")
    try:
        proj = make_project(ls, sdk, "dbsal e2e PAT", 4, first=N_IMAGES)
        sdk.ml.create(url=b.url, project=proj.id, title=TITLE)
        seed_status = b.wait_status(proj.id, lambda s: s["service"]["seed_batch"] > 0,
                                    "the seed batch with a personal access token")
        view = wait_for(lambda: queue_tab(sdk, proj.id), EVENT_TIMEOUT, "the queue tab")
        order = client.queue(proj.id, view)
        seed = [t for t in order if one_prediction(sdk, t)["score"] == 1.0]
        for task in seed:
            sdk.annotations.create(id=task, result=annotation_result(proj.truth[task]))
        trained = b.wait_status(proj.id,
                                lambda s: s["al_step"] == 1 and s["training_state"] == "idle",
                                "training with a personal access token", RUN_TIMEOUT)
        rest = [t for t in proj.truth if t not in seed]
        yield {"backend": b, "pat": pat, "project": proj, "seed": seed, "order": order,
               "seed_status": seed_status, "trained": trained,
               "predictions": {t: one_prediction(sdk, t) for t in rest}}
    finally:
        b.stop()


# ---------------------------------------------------------------------------- the steps


def test_project_with_uploaded_images(sdk, client, backend, project):
    tasks = list(client.list_tasks(project.id))
    assert sorted(t["id"] for t in tasks) == sorted(project.truth)
    for task in tasks:
        assert task["data"]["image"].startswith("/data/upload/")
        np.testing.assert_array_equal(client.load_image(task, "image"), project.images[task["id"]])
    assert all(set(np.unique(t)) == {0, 1, 2} for t in project.truth.values())
    assert backend.status(project.id) is None  # not connected yet: unknown to the backend


def test_wrong_label_config_is_refused(sdk, backend):
    bad = sdk.projects.create(title="rectangles", label_config=WRONG_CONFIG).id
    with pytest.raises(ApiError) as info:
        sdk.ml.create(url=backend.url, project=bad, title=TITLE)
    assert info.value.status_code == 400
    assert "unsupported label config" in str(info.value.body)
    assert "BrushLabels" in str(info.value.body)
    assert list(sdk.ml.list(project=bad)) == []
    assert backend.status(bad) is None
    assert "label config refused" in backend.log_text()


def test_connecting_calls_setup(sdk, backend, project, connected):
    ml = connected["ml"]
    assert connected["status_before"] is None
    assert ml.state == "CO" and ml.title == TITLE and ml.error_message is None
    status = backend.status(project.id)  # /setup registered the project
    assert status is not None and status["project"] == project.id
    assert sdk.projects.get(id=project.id).model_version == TITLE
    hooks = [h for h in sdk.webhooks.list(project=project.id) if h.url == f"{backend.url}/webhook"]
    assert len(hooks) == 1 and hooks[0].send_payload


def test_seed_batch_first_in_queue(sdk, backend, project, seeded):
    seed, order, scores = seeded["seed"], seeded["order"], seeded["scores"]
    assert len(seed) == INITIAL_BATCH
    assert sorted(order) == sorted(project.truth)
    assert sorted(order[:INITIAL_BATCH]) == seed
    assert all(scores[t] == 0.0 for t in order[INITIAL_BATCH:])
    for task in project.truth:
        assert one_prediction(sdk, task)["result"] == []  # whole images: nothing pre-drawn
    status = backend.status(project.id)
    assert status["al_step"] == 0 and status["model_version"] is None
    assert status["budget"]["images"] == INITIAL_BATCH  # the seed images were downloaded
    assert status["queue_length"] == N_IMAGES


def test_seed_annotations_start_training_by_webhook(backend, project, step1):
    assert [s["training_state"] for s in step1["counted"]] == ["idle"] * (TRAIN_AFTER - 1)
    states = [s["training_state"] for s in step1["seen"]]
    assert "running" in states, f"never saw the run going: {states}"
    status = step1["status"]
    assert status["model_version"].startswith(f"{TITLE}-1-")
    assert status["al_step"] == 1 and status["last_error"] is None
    assert status["last_trained"] is not None and status["annotations_since_run"] == 0
    assert status["service"]["model_loaded"]
    assert status["queue_length"] == N_IMAGES - INITIAL_BATCH


def test_step1_predictions_and_queue(sdk, client, project, seeded, step1):
    predictions, queried = step1["predictions"], set(step1["queried"])
    assert len(queried) == STEP_SIZE
    for task in seeded["seed"]:
        assert our_predictions(sdk, task) == []  # replaced: labeled tasks keep none
    for task, prediction in predictions.items():
        assert prediction["model_version"] == TITLE
        assert 0.0 <= prediction["score"] <= 1.0
        if task not in queried:
            assert prediction["result"] == []
            continue
        masks = region_masks(prediction)
        assert len(masks) >= 1
        assert all(m.any() for m in masks), "every queried region must be a non-empty mask"
        assert np.sum(masks, axis=0).max() == 1, "superpixel regions must not overlap"
        for region in prediction["result"]:
            assert region["from_name"] == "tag" and region["to_name"] == "image"
            assert (region["original_width"], region["original_height"]) == (SIZE, SIZE)
            assert region["value"]["brushlabels"][0] in CLASSES
    assert sdk.projects.get(id=project.id).model_version == TITLE
    check_queue_order(sdk, client, project.id, seeded["view"], set(predictions), queried)
    assert step1["status"]["budget"]["images"] == INITIAL_BATCH + STEP_SIZE


def test_next_task_follows_the_queue_tab(ls, sdk, client, project, seeded, step1):
    view = sdk.views.get(id=seeded["view"])
    top = client.queue(project.id, seeded["view"])[0]
    response = httpx.post(
        f"{ls.url}/api/dm/actions", headers=ls.headers, timeout=30,
        params={"id": "next_task", "project": project.id, "tabID": seeded["view"]},
        json={"ordering": view.data["ordering"], "filters": view.data["filters"]})
    assert response.status_code == 200, response.text[:500]
    assert response.json()["id"] == top
    assert top in step1["queried"]


def test_answers_and_start_training_give_step2(sdk, client, backend, project, seeded, step1,
                                              step2):
    counted, status = step2["counted"], step2["status"]
    assert counted["training_state"] == "idle" and counted["al_step"] == 1  # 2 < TRAIN_AFTER
    assert status["model_version"].startswith(f"{TITLE}-2-")
    assert status["model_version"] != step1["status"]["model_version"]
    assert status["last_trained"] != step1["status"]["last_trained"]
    assert status["budget"]["images"] == INITIAL_BATCH + 2 * STEP_SIZE
    log = backend.log_text()
    assert f"webhook START_TRAINING for project {project.id}: started" in log
    assert "skipped for training" not in log  # the partial answers were used
    # One prediction of ours per unlabeled task, none on labeled ones: older ones were deleted.
    ours = [p for p in sdk.predictions.list(project=project.id) if p.model_version == TITLE]
    assert sorted(p.task for p in ours) == step2["unlabeled"]
    old_ids = {p["id"] for p in step1["predictions"].values()}
    assert not old_ids & {p.id for p in ours}
    queried = {p.task for p in ours if p.result}
    assert len(queried) == STEP_SIZE
    check_queue_order(sdk, client, project.id, seeded["view"], set(step2["unlabeled"]), queried)
    assert status["queue_length"] == len(step2["unlabeled"])


def test_retrieve_predictions_action(client, backend, project, step2, retrieved):
    before, after = retrieved["before"], retrieved["after"]
    assert retrieved["requests"] == 1
    for task in project.truth:
        assert len(after[task]) == 1, f"task {task}: {len(after[task])} predictions of ours"
        if task in step2["labeled"]:
            assert before[task] == []  # Label Studio asks only for tasks without one
            assert all(m.any() for m in region_masks(after[task][0]))
            assert len(after[task][0]["result"]) >= 1
        else:
            assert after[task][0]["id"] == before[task][0]["id"]
    # A direct POST /predict answers one prediction per task, in order.
    tasks = list(client.list_tasks(project.id))
    answer = backend.predict(project.id, tasks)
    assert answer["model_version"] == TITLE
    assert len(answer["results"]) == len(tasks)
    for result in answer["results"]:
        assert result["model_version"] == TITLE and 0.0 <= result["score"] <= 1.0
        masks = region_masks(result)
        assert masks and all(m.shape == (SIZE, SIZE) and m.any() for m in masks)


def test_state_survives_a_restart(client, backend, project, step2, restarted):
    before, after = restarted["before"], restarted["after"]
    for key in ("model_version", "al_step", "budget", "queue_length", "last_trained"):
        assert after[key] == before[key], key
    assert after["training_state"] == "idle"
    assert after["service"]["model_loaded"]
    assert backend.log_text().count("runtime ready") == 2
    assert "resumed model" in backend.log_text()
    tasks = [t for t in client.list_tasks(project.id) if t["id"] in step2["unlabeled"][:2]]
    answer = backend.predict(project.id, tasks)
    assert len(answer["results"]) == 2
    assert all(region_masks(r) for r in answer["results"])
    assert backend.status(project.id)["model_version"] == before["model_version"]


def test_personal_access_token_backend(sdk, pat_run):
    pat, seed_status, trained = pat_run["pat"], pat_run["seed_status"], pat_run["trained"]
    assert pat.count(".") == 2  # a JWT refresh token, not a legacy token
    assert len(pat_run["seed"]) == INITIAL_BATCH
    assert sorted(pat_run["order"][:INITIAL_BATCH]) == sorted(pat_run["seed"])
    assert seed_status["budget"]["images"] == INITIAL_BATCH  # images downloaded with the PAT
    assert trained["model_version"].startswith(f"{TITLE}-1-") and trained["last_error"] is None
    assert "skipped for training" not in pat_run["backend"].log_text()
    (task, prediction), = pat_run["predictions"].items()
    assert prediction["result"] and all(m.any() for m in region_masks(prediction))


def test_api_keys_never_logged(ls, backend, pat_run):
    secrets = {"legacy token": ls.token, "personal access token": pat_run["pat"]}
    assert re.fullmatch(r"[0-9a-f]{40}", ls.token)  # the main backend ran with a legacy token
    for b in (backend, pat_run["backend"]):
        text = b.log_text()
        assert "runtime ready" in text and "POST /setup" in text
        for kind, secret in secrets.items():
            assert secret not in text, f"the {kind} appears in {b.log_path}"
