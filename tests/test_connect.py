"""The backend finding itself among a project's ML backends (no Label Studio needed)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dbsal_backend.server.connect import SelfCheckFailed, find_backend


class Listing:
    """What LabelStudioClient.ml_backends answers for a project."""

    def __init__(self, urls):
        self.urls = urls

    def ml_backends(self, project):
        return [{"id": k, "url": url} for k, url in enumerate(self.urls)]


@pytest.fixture
def health():
    """A /health answering instance 'ours'."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"status": "UP", "instance": "ours"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_finds_itself_by_instance(health):
    assert find_backend(Listing(["ftp://x", health]), 1, "ours")["url"] == health
    assert find_backend(Listing([health]), 1, "someone else") is None
    assert find_backend(Listing([]), 1, "ours") is None


def test_a_silent_url_is_unknown_not_disconnected(health):
    dead = closed_port_url()
    with pytest.raises(SelfCheckFailed, match="did not answer /health"):
        find_backend(Listing([dead]), 7, "ours")
    # Another listed URL that is this backend settles it.
    assert find_backend(Listing([dead, health]), 7, "ours")["url"] == health
    # DBSAL_PUBLIC_URL needs no answer.
    assert find_backend(Listing([dead]), 7, "ours", public_url=dead)["url"] == dead
