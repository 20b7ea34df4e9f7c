"""Training runs apart from the web process.

A run (training, scoring the pool, publishing: minutes of work) happens in a child process,
``python -m dbsal_backend.server.jobs PROJECT``, so the web process keeps answering ``/predict``,
``/webhook`` and ``/setup`` on its own cores, and a crash of the run (an exception, running out of
memory, ``kill -9``) leaves the server up: the run is reported failed and the state is what the
last complete step left (the checkpoint is swapped atomically and a step is recorded in one
transaction). :class:`Jobs` starts at most ``DBSAL_MAX_CONCURRENT_RUNS`` runs at a time, across
projects; the scheduler (:mod:`.scheduler`) keeps one run per project and coalesces events.

The child gets the settings and the server's instance id on its standard input (never in its
command line or environment), logs to its standard error, which the server forwards to its own
log, and prints its result as one JSON line. It exits when the server process disappears. It
runs ``DBSAL_RUN_NICENESS`` below the server, so that regions made on demand for a person in
Label Studio do not wait behind training.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from typing import Any

from .settings import Settings

__all__ = ["JobFailed", "Jobs", "main"]

log = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """A run's process failed; the message holds the end of its log."""


def settings_payload(settings: Settings, instance_id: str) -> str:
    """The settings (secrets included) and instance id as one JSON document."""
    values = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        values[name] = str(value) if name == "model_dir" else value
    return json.dumps({"settings": values, "instance": instance_id})


class Jobs:
    """Runs ``Service.run(project)`` in child processes.

    Parameters
    ----------
    settings : Settings
        Passed to every child.
    instance_id : str
        This server's instance id (the child confirms projects with it).
    """

    def __init__(self, settings: Settings, instance_id: str) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_runs)

    def run(self, project: int) -> dict[str, Any]:
        """Run one project's run in a child process and wait for it.

        Raises
        ------
        JobFailed
            When the child exits with an error (its last log lines say why).
        """
        with self._slots:
            return self._run(project)

    def _run(self, project: int) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DBSAL_", "LABEL_STUDIO_API_KEY", "BASIC_AUTH_"))}
        # threads that wait sleep instead of spinning: a run shares the machine with the server
        # (and often Label Studio), and spinning OpenMP threads slowed MC dropout 30-fold
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        process = subprocess.Popen(
            [sys.executable, "-m", "dbsal_backend.server.jobs", str(project)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tail: deque[str] = deque(maxlen=20)
        reader = threading.Thread(target=_forward, args=(process.stderr, tail, project),
                                  daemon=True)
        reader.start()
        process.stdin.write(settings_payload(self.settings, self.instance_id))
        process.stdin.close()
        output = process.stdout.read()
        code = process.wait()
        reader.join(timeout=5)
        if code != 0:
            reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            last = next((line for line in reversed(tail) if line.strip()), "")
            raise JobFailed(f"the training run of project {project} failed ({reason}): "
                            f"{last[-500:]}")
        lines = [line for line in output.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else {}


def _forward(stream, tail: deque, project: int) -> None:
    """Copy a child's log lines into the server's log (and keep the last few)."""
    job_log = logging.getLogger("dbsal_backend.job")
    for line in stream:
        line = line.rstrip("\n")
        tail.append(line)
        job_log.info("[run %s] %s", project, line)


def _exit_with_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            threading.Event().wait(1.0)

    threading.Thread(target=watch, daemon=True, name="dbsal-parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    """The child: read settings from stdin, run one project's run, print the result."""
    argv = sys.argv[1:] if argv is None else argv
    _exit_with_parent()
    payload = json.loads(sys.stdin.read())
    settings = Settings.model_validate(payload["settings"])
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if settings.run_niceness:
        os.nice(settings.run_niceness)  # people waiting on /predict go first
    import torch

    from .service import Service
    from .state import StateStore

    torch.set_num_threads(settings.run_threads or os.cpu_count() or 1)
    state = StateStore(settings.model_dir / "state.sqlite3")
    service = Service(settings, state, instance_id=payload["instance"])
    try:
        result = service.run(int(argv[0]))
    except Exception as exc:  # noqa: BLE001 - reported to the parent through the exit code
        logging.getLogger(__name__).exception("run failed")
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
