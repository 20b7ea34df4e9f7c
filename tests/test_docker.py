"""The Docker image, run for real: the backend in a container against a real Label Studio.

Opt-in (``make test-docker``, docs/docker.md): skipped unless podman is installed and
``DBSAL_DOCKER_TESTS=1``. The image (``DBSAL_DOCKER_IMAGE``, default ``localhost/dbsal:test``)
is built beforehand by ``tests/docker/build.sh``. A Label Studio 1.23.2 server runs from its
virtual environment on the host (``tests/lsserver.py``); the container runs with
``--network=host``, so each reaches the other on 127.0.0.1.

The loop, with small CPU settings and 12 synthetic 64x80 images uploaded through the import API:
connect (Label Studio's ``POST /api/ml``: the backend confirms the project over the API and
queues the seed batch, predictions with score 0), the seed tasks annotated over the SDK, "Start
Training" (``client.ml.train``; ``DBSAL_TRAIN_AFTER=0``, so no webhook count starts a run), and
step 1: a trained model and queried regions on the least confident tasks. The figures (container
start to the first ``/health``, connect to seed, Start Training to step 1) are printed and written
to ``$DBSAL_DOCKER_REPORT`` if set.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from backendproc import (CLASSES, RUN_TIMEOUT, SETTINGS, START_TIMEOUT, TITLE,
                         Project, StatusPolling, annotation_result, connect, make_project, ours,
                         region_masks, wait_for)
from lsserver import (LabelStudioServer, command_line_secret, free_port,  # noqa: F401
                      label_studio_server, ls, sdk)

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("DBSAL_DOCKER_IMAGE") or "localhost/dbsal:test"
PODMAN = shutil.which("podman")
#: podman-compose 1.1 or newer (Debian 12's 1.0.3 ignores --no-deps and leaves ${VAR:-} as is)
PODMAN_COMPOSE = os.environ.get("DBSAL_PODMAN_COMPOSE") or shutil.which("podman-compose")
ENABLED = os.environ.get("DBSAL_DOCKER_TESTS") == "1"

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        not (PODMAN and ENABLED),
        reason="Docker image test is opt-in: run `make test-docker` (needs podman; sets "
               "DBSAL_DOCKER_TESTS=1)" + ("" if PODMAN else "; podman is not installed")),
]

HEIGHT, WIDTH = 64, 80
N_IMAGES = 12
INITIAL_BATCH = 3
STEP_SIZE = 2
CONTAINER_SETTINGS = {
    **SETTINGS,  # unet from scratch, 3 + 2 epochs, 30 superpixels, 3 MC passes, CPU
    "DBSAL_MAX_SIDE": str(WIDTH),
    "DBSAL_INITIAL_BATCH": str(INITIAL_BATCH),
    "DBSAL_STEP_SIZE": str(STEP_SIZE),
    "DBSAL_TRAIN_AFTER": "0",  # only Start Training starts a run
    "THREADS": "4",
    "OMP_NUM_THREADS": "1",
}
FIGURES: dict[str, float | str] = {}


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


class Container(StatusPolling):
    """The image running the backend (gunicorn) on 127.0.0.1:``port`` of the host's network."""

    def __init__(self, ls: LabelStudioServer, tmp: Path) -> None:
        self.ls = ls
        self.name = f"dbsal-test-{secrets.token_hex(4)}"
        self.port = free_port()
        self.auth = None  # what backendproc.connect reads
        # the API key goes in a file, not on the command line
        self.env_file = tmp / "container.env"
        env = {**CONTAINER_SETTINGS, "HOST": "127.0.0.1", "PORT": str(self.port),
               "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token}
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.env_file.chmod(0o600)
        self.started = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start the container; seconds from ``podman run`` to the first ``/health`` 200."""
        t0 = time.monotonic()
        podman("run", "-d", "--rm", "--name", self.name, "--network=host",
               "--env-file", str(self.env_file), IMAGE)
        self.started = True
        atexit.register(self.stop)

        def healthy() -> bool:
            state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
            if state.returncode != 0 or state.stdout.strip() != "true":
                pytest.fail(f"container {self.name} stopped during start-up:\n{self.log_tail()}",
                            pytrace=False)
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, START_TIMEOUT, f"container {self.name} to answer /health",
                 self.log_tail, interval=0.5)
        return time.monotonic() - t0

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        podman("stop", "-t", "20", self.name, timeout=60, check=False)
        podman("rm", "-f", "-v", self.name, timeout=60, check=False)  # --rm did it, normally

    def logs(self) -> str:
        try:
            out = podman("logs", self.name, check=False, timeout=30)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"<no logs: {exc}>"
        return out.stdout + out.stderr

    def log_tail(self, n_chars: int = 6000) -> str:
        return f"container {self.name} log:\n{self.logs()[-n_chars:]}"

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"container {self.name} log (tail)", self.logs()[-8000:]),
                ("Label Studio log (tail)", self.ls.log_tail(3000))]


def record(name: str, value: float | str) -> None:
    FIGURES[name] = round(value, 1) if isinstance(value, float) else value
    print(f"\n[docker] {name}: {FIGURES[name]}", flush=True)
    path = os.environ.get("DBSAL_DOCKER_REPORT")
    if path:
        Path(path).write_text(json.dumps(FIGURES, indent=2) + "\n")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def container(ls, tmp_path_factory) -> Iterator[Container]:
    found = podman("image", "exists", IMAGE, check=False)
    if found.returncode != 0:
        pytest.fail(f"image {IMAGE} not found: build it with tests/docker/build.sh "
                    "(`make test-docker` does)", pytrace=False)
    record("image", IMAGE)
    size = podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()
    record("image size (MB)", float(int(size) / 1e6))
    c = Container(ls, tmp_path_factory.mktemp("container"))
    try:
        record("container start to first /health (s)", c.start())
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def project(ls, sdk) -> Project:
    return make_project(ls, sdk, "dbsal docker", N_IMAGES, height=HEIGHT, width=WIDTH)


@pytest.fixture(scope="module")
def connected(sdk, container, project) -> dict:
    before = container.status(project.id)
    t0 = time.monotonic()
    ml = connect(sdk, container, project)  # POST /api/ml; waits for the seed batch
    record("connect to seed batch (s)", time.monotonic() - t0)
    status = container.status(project.id)
    return {"ml": ml, "before": before, "status": status, "seed": status["seed_batch"]}


@pytest.fixture(scope="module")
def step1(sdk, container, project, connected) -> dict:
    seed = connected["seed"]
    for task in seed:
        sdk.annotations.create(id=task, result=annotation_result(project.truth[task]))
    container.wait_status(project.id, lambda s: s["annotations_since_run"] == len(seed),
                          "the seed annotations' webhooks to be counted")
    idle = container.status(project.id)
    t0 = time.monotonic()
    sdk.ml.train(id=connected["ml"].id)  # "Start Training"
    seen: list[dict] = []
    status = container.wait_status(
        project.id, lambda s: s["al_step"] == 1 and s["training_state"] == "idle",
        "Start Training's run and step 1", RUN_TIMEOUT, seen)
    record("Start Training to step 1 (s)", time.monotonic() - t0)
    unlabeled = sorted(set(project.truth) - set(seed))
    predictions = {t: ours(sdk, t) for t in unlabeled}
    queried = sorted(t for t, p in predictions.items() if p and p[0]["result"])
    return {"idle": idle, "seen": seen, "status": status, "predictions": predictions,
            "queried": queried}


# ---------------------------------------------------------------------------- tests


def test_image_runs_as_dbsal_and_its_healthcheck_passes(container):
    user = podman("exec", container.name, "id", "-un").stdout.strip()
    assert user == "dbsal"
    check = podman("healthcheck", "run", container.name, check=False, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    # the backend answers inside the container too (its own loopback = the host's here)
    inside = podman("exec", container.name, "python3", "-c",
                    "import json, os, urllib.request; print(json.load(urllib.request.urlopen("
                    "f'http://127.0.0.1:{os.environ[\"PORT\"]}/health'))['status'])").stdout
    assert inside.strip() == "UP"


def test_connect_confirms_the_project_and_seeds(sdk, container, project, connected):
    assert connected["before"] is None  # unknown until Label Studio connected it
    status = connected["status"]
    assert status["connected"] and status["title"] == TITLE and status["al_step"] == 0
    assert len(connected["seed"]) == INITIAL_BATCH
    info = sdk.projects.get(id=project.id)
    assert info.sampling == "Uncertainty sampling" and info.model_version == TITLE
    for task in connected["seed"]:
        assert [(p["result"], p["score"]) for p in ours(sdk, task)] == [([], 0.0)]


def test_start_training_gives_step1_with_queried_regions(sdk, container, project, connected,
                                                         step1):
    assert step1["idle"]["al_step"] == 0  # nothing trained before Start Training
    assert {s["training_state"] for s in step1["seen"]} & {"queued", "running"}
    status = step1["status"]
    assert status["model_version"].startswith(f"{TITLE}-1-") and status["last_error"] is None
    assert status["budget"]["spent"]["images"] == INITIAL_BATCH
    queried = step1["queried"]
    assert len(queried) == STEP_SIZE and status["questions_ready"] == STEP_SIZE
    record("queried tasks", str(queried))
    for task in queried:
        (prediction,) = step1["predictions"][task]
        masks = region_masks(prediction)
        assert masks and all(m.shape == (HEIGHT, WIDTH) and m.any() for m in masks)
        assert np.sum(masks, axis=0).max() == 1, "regions must not overlap"
        assert all(r["value"].get("polygonlabels", r["value"].get("brushlabels"))[0] in CLASSES
                   for r in prediction["result"])
    record("regions of the queried tasks", str([len(step1["predictions"][t][0]["result"])
                                                 for t in queried]))
    for task in connected["seed"]:
        assert ours(sdk, task) == []  # the seed's score-0 predictions were replaced


class ComposeService(Container):
    """docker-compose.yml's ``dbsal`` service, run by podman-compose on the built image with the
    host's network (``network_mode: host`` and the small settings in an override file)."""

    def __init__(self, ls: LabelStudioServer, tmp: Path) -> None:
        self.ls = ls
        self.port = free_port()
        self.auth = ("ls-robot", command_line_secret())
        self.project_name = f"dbsal-test-{secrets.token_hex(4)}"
        self.name = ""  # the container's id, once up
        self.started = False
        env_file = tmp / "compose.env"  # what the compose file asks to find in .env
        env_file.write_text(f"LABEL_STUDIO_API_KEY={ls.token}\nBASIC_AUTH_USER={self.auth[0]}\n"
                            f"BASIC_AUTH_PASS={self.auth[1]}\n")
        env_file.chmod(0o600)
        settings = {**CONTAINER_SETTINGS, "LABEL_STUDIO_URL": ls.url, "HOST": "127.0.0.1",
                    "PORT": str(self.port)}
        override = tmp / "override.yml"
        override.write_text(json.dumps({"services": {"dbsal": {  # JSON is YAML
            "image": IMAGE, "network_mode": "host",
            "environment": [f"{k}={v}" for k, v in settings.items()]}}}))
        self.compose = [PODMAN_COMPOSE, "-p", self.project_name, "--env-file", str(env_file),
                        "-f", str(REPO / "docker-compose.yml"), "-f", str(override)]

    def start(self) -> float:
        t0 = time.monotonic()
        self.started = True
        atexit.register(self.stop)
        up = subprocess.run([*self.compose, "up", "-d", "--no-deps", "dbsal"],
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        ids = podman("ps", "-q", "--filter",
                     f"label=com.docker.compose.project={self.project_name}").stdout.split()
        assert len(ids) == 1, f"containers of {self.project_name}: {ids}\n{up.stdout}{up.stderr}"
        self.name = ids[0]

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, START_TIMEOUT, "the compose service's /health", self.log_tail,
                 interval=0.5)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.started:
            self.started = False
            subprocess.run([*self.compose, "down", "-v"], capture_output=True, timeout=120)


def test_compose_file_runs_the_backend_with_basic_auth(ls, sdk, container, tmp_path):
    """The compose file's dbsal service (its environment, its named volume, which the image's
    user must be able to write, and basic auth), up to a confirmed connection and the seed.
    Label Studio's own image cannot be pulled here: it runs on the host."""
    if not PODMAN_COMPOSE:
        pytest.skip("podman-compose is not installed (pip install podman-compose, or "
                    "DBSAL_PODMAN_COMPOSE=<path>)")
    version = subprocess.run([PODMAN_COMPOSE, "version"], capture_output=True, text=True,
                             timeout=60).stdout
    found = re.search(r"podman-compose version (\d+)\.(\d+)\S*", version)
    if not found or (int(found[1]), int(found[2])) < (1, 1):
        pytest.skip(f"podman-compose 1.1 or newer needed, found {version.strip()[:80]!r} "
                    "(pip install podman-compose, then DBSAL_PODMAN_COMPOSE=<path>)")
    record("podman-compose", found[0])
    service = ComposeService(ls, tmp_path)
    try:
        record("compose: up to first /health (s)", service.start())
        assert httpx.get(f"{service.url}/status", timeout=10).status_code == 401  # auth is on
        project = make_project(ls, sdk, "dbsal compose", 6, first=100, height=HEIGHT,
                               width=WIDTH)
        t0 = time.monotonic()
        connect(sdk, service, project)  # basic auth in the model connection; waits for the seed
        record("compose: connect to seed batch (s)", time.monotonic() - t0)
        assert len(service.status(project.id)["seed_batch"]) == INITIAL_BATCH
        inside = podman("exec", service.name, "sh", "-c", "id -un; ls /data/models").stdout
        assert inside.split()[0] == "dbsal" and len(inside.split()) > 1, inside
    finally:
        service.stop()
