"""A real Label Studio server for end-to-end tests.

The server runs from its own virtual environment (``make ls-venv``), found through the ``LS_VENV``
environment variable (default: ``<repo>/.ls-venv``). Each server gets a free port on 127.0.0.1, a
fresh data directory, a legacy API token, and the environment recorded in
``shared/docs/label-studio-notes.md`` (local ML backends and webhooks allowed, local files served,
no version check against the package index). Its output goes to a log file that is shown when
start-up fails; the whole process group is killed by :meth:`LabelStudioServer.stop`.

Use the session fixture :func:`label_studio_server` (one server for the whole test session,
shared by every test module that imports it), or :func:`start_label_studio` directly.
If the server's virtual environment is missing, the fixture fails with a message saying how to
make it, unless ``DBSAL_SKIP_E2E=1`` is set, in which case it skips.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

#: Default location of the server's virtual environment (made by ``make ls-venv``).
DEFAULT_LS_VENV = Path(__file__).resolve().parents[1] / ".ls-venv"
ADMIN_EMAIL = "admin@example.com"


def command_line_secret(n_bytes: int = 12) -> str:
    """A random secret that is safe as a command-line argument: URL-safe characters, and never a
    leading "-" (``secrets.token_urlsafe`` starts with one about one time in 64, and argparse then
    reads it as an option)."""
    return "p" + secrets.token_urlsafe(n_bytes)


class LabelStudioUnavailable(RuntimeError):
    """The Label Studio server could not be found or did not start."""


@dataclass
class LabelStudioServer:
    """A running Label Studio server.

    Attributes
    ----------
    url : str
        Base URL, ``http://127.0.0.1:<port>`` (no trailing slash).
    token : str
        The admin's legacy API token (``Authorization: Token <token>``).
    email, password : str
        The admin's credentials.
    data_dir : Path
        The server's data directory (database, uploads).
    files_root : Path
        Document root for local-files storage (``/data/local-files/?d=<path relative to it>``).
    log_path : Path
        The server's combined stdout and stderr.
    """

    url: str
    token: str
    email: str
    password: str
    data_dir: Path
    files_root: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)
    _pat: str | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def log_tail(self, n_chars: int = 4000) -> str:
        """Return the last ``n_chars`` characters of the server log."""
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError as exc:
            return f"<no log at {self.log_path}: {exc}>"

    def personal_access_token(self) -> str:
        """The admin's personal access token (a JWT refresh token), created on first use.

        Label Studio keeps one per user and shows it only when created, so it is kept here.
        """
        if self._pat is None:
            response = httpx.post(f"{self.url}/api/token/", headers=self.headers, timeout=30)
            if response.status_code not in (200, 201):
                raise LabelStudioUnavailable(
                    f"POST /api/token/ answered {response.status_code}: {response.text[:500]}"
                )
            self._pat = response.json()["token"]
        return self._pat

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` header with the legacy token."""
        return {"Authorization": f"Token {self.token}"}

    def upload_files(self, project: int, files: Mapping[str, bytes]) -> dict[str, int]:
        """Import files (e.g. images) as tasks through the import API; ``{file name: task id}``.

        Uploaded files get ``/data/upload/...`` URLs in the task data.
        """
        form = {
            f"file{k}": (name, content, "application/octet-stream")
            for k, (name, content) in enumerate(files.items())
        }
        response = httpx.post(
            f"{self.url}/api/projects/{project}/import", headers=self.headers, files=form,
            timeout=120,
        )
        if response.status_code != 201 or response.json().get("task_count") != len(files):
            raise LabelStudioUnavailable(
                f"importing {len(files)} files answered {response.status_code}: "
                f"{response.text[:500]}"
            )
        ids: dict[str, int] = {}
        page = 1
        while True:
            listing = httpx.get(
                f"{self.url}/api/tasks/", headers=self.headers, timeout=60,
                params={"project": project, "page": page, "page_size": 100},
            )
            if listing.status_code != 200:
                break
            for task in listing.json()["tasks"]:
                urls = [v for v in task["data"].values() if isinstance(v, str)]
                for name in files:
                    if any(url.endswith("-" + name) for url in urls):
                        ids[name] = task["id"]
            page += 1
        if len(ids) != len(files):
            raise LabelStudioUnavailable(f"found tasks for {sorted(ids)} of {sorted(files)}")
        return ids

    def stop(self) -> None:
        """Stop the server and every process of its process group (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever ignored SIGTERM
        except ProcessLookupError:
            pass
        self.process.wait(timeout=15)


def ls_venv_path() -> Path:
    """Return the Label Studio virtual environment named by ``LS_VENV`` (or the default)."""
    return Path(os.environ.get("LS_VENV") or DEFAULT_LS_VENV)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(server: LabelStudioServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LabelStudioUnavailable(
                f"Label Studio exited with code {server.process.returncode} during start-up; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.stop()
    raise LabelStudioUnavailable(
        f"Label Studio did not answer /health within {timeout:.0f} s; "
        f"log {server.log_path}:\n{server.log_tail()}"
    )


def start_label_studio(
    tmp_dir: Path, ls_venv: Path | None = None, timeout: float = 120.0
) -> LabelStudioServer:
    """Start a fresh Label Studio server and wait until ``/health`` answers 200.

    Parameters
    ----------
    tmp_dir : Path
        Directory for the data directory, the local-files root and the log (created).
    ls_venv : Path, optional
        The server's virtual environment; default :func:`ls_venv_path`.
    timeout : float
        Seconds to wait for ``/health``.

    Returns
    -------
    LabelStudioServer
        The running server; call :meth:`LabelStudioServer.stop` when done.

    Raises
    ------
    LabelStudioUnavailable
        If the executable is missing, the server exits early or does not become healthy.
    """
    venv = Path(ls_venv) if ls_venv is not None else ls_venv_path()
    executable = venv / "bin" / "label-studio"
    if not executable.exists():
        raise LabelStudioUnavailable(
            f"Label Studio is not installed: {executable} does not exist. Run `make ls-venv` "
            "(or point LS_VENV at a virtual environment with label-studio==1.23.2); "
            "set DBSAL_SKIP_E2E=1 to skip the end-to-end tests."
        )
    tmp_dir = Path(tmp_dir)
    data_dir = tmp_dir / "ls-data"
    files_root = tmp_dir / "ls-files"
    data_dir.mkdir(parents=True, exist_ok=True)
    files_root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(20)
    password = command_line_secret()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
    }
    # The backend's own settings must not leak into the server.
    env.pop("LABEL_STUDIO_API_KEY", None)
    command = [
        str(executable), "start", "--no-browser",
        "--port", str(port), "--internal-host", "127.0.0.1",
        "--username", ADMIN_EMAIL, f"--password={password}",
        f"--user-token={token}", "--enable-legacy-api-token",
    ]  # fmt: skip
    log_path = tmp_dir / "label-studio.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=tmp_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LabelStudioServer(
        url=f"http://127.0.0.1:{port}",
        token=token,
        email=ADMIN_EMAIL,
        password=password,
        data_dir=data_dir,
        files_root=files_root,
        log_path=log_path,
        process=process,
    )
    atexit.register(server.stop)
    _wait_healthy(server, timeout)
    return server


_session_server: LabelStudioServer | None = None


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """One Label Studio server for the whole test session.

    Importing this fixture into several modules (or a ``conftest.py``) still starts one server.
    Fails when the server's virtual environment is missing, unless ``DBSAL_SKIP_E2E=1``.
    """
    global _session_server
    if os.environ.get("DBSAL_SKIP_E2E") == "1":
        pytest.skip("DBSAL_SKIP_E2E=1: end-to-end tests against Label Studio are skipped")
    if _session_server is None or _session_server.process.poll() is not None:
        if _session_server is not None:
            _session_server.stop()
        try:
            _session_server = start_label_studio(tmp_path_factory.mktemp("label-studio"))
        except LabelStudioUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
    yield _session_server
    _session_server.stop()


@pytest.fixture(scope="module")
def ls(label_studio_server: LabelStudioServer) -> LabelStudioServer:
    """The session's Label Studio, under the short name the e2e modules use."""
    return label_studio_server


@pytest.fixture(scope="module")
def sdk(ls: LabelStudioServer):
    """An SDK client of it, with the admin's token."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=ls.url, api_key=ls.token)
