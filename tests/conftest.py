import os
import sys
from pathlib import Path

# One intra-op thread for torch, here and in every process the tests start (the backend server
# inherits it). On a 2-core machine shared by pytest, a Label Studio server and the backend,
# OpenMP threads spin against each other: MC dropout measured 30x slower with 2 threads than
# with 1 under that load.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsserver import label_studio_server  # noqa: E402,F401  (session fixture for e2e tests)

import pytest  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach logs to failing reports: any fixture value with a ``failure_logs()`` method
    (returning ``[(title, text), ...]``, e.g. a backend subprocess) adds those sections."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        logs = getattr(value, "failure_logs", None)
        if callable(logs):
            for title, text in logs():
                report.sections.append((title, text))
