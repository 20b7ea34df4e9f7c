"""gunicorn's threaded worker with two changes for a backend on a network.

- **A deadline per request**: a request's line, headers and body must arrive within
  :data:`REQUEST_SECONDS` of its first byte. gunicorn already keeps idle connections out of
  the thread pool, but a client that trickles bytes would hold a thread for as long as it
  likes; here it is cut off.
- **JSON error pages**: the errors gunicorn answers itself (a request line or headers too long:
  414, 431; malformed requests: 400) are ``{"error": ..., "status": ...}`` like the app's.
"""

from __future__ import annotations

import json
import socket
import time

from gunicorn import util
from gunicorn.http.errors import NoMoreData
from gunicorn.workers import gthread

__all__ = ["REQUEST_SECONDS", "ThreadWorker"]

#: Seconds a request may take to arrive, from its first byte.
REQUEST_SECONDS = 30.0


class _DeadlineSocket:
    """A socket whose reads fail once the current request's deadline has passed."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds

    def restart(self) -> None:
        self._deadline = time.monotonic() + self._seconds

    def _before_read(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise NoMoreData(b"")
        self._sock.settimeout(left)

    def recv(self, *args):  # noqa: ANN002 - socket's signature
        self._before_read()
        try:
            return self._sock.recv(*args)
        except socket.timeout:
            raise NoMoreData(b"") from None
        finally:
            self._sock.settimeout(None)

    def recv_into(self, *args):  # noqa: ANN002
        self._before_read()
        try:
            return self._sock.recv_into(*args)
        except socket.timeout:
            raise NoMoreData(b"") from None
        finally:
            self._sock.settimeout(None)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class ThreadWorker(gthread.ThreadWorker):
    """``gthread`` with a per-request deadline (see the module docstring)."""

    def handle(self, conn):  # noqa: ANN001 - gunicorn's signature
        if isinstance(conn.sock, _DeadlineSocket):
            conn.sock.restart()
        elif not getattr(conn, "initialized", False):
            conn.sock = _DeadlineSocket(conn.sock, REQUEST_SECONDS)
        return super().handle(conn)


def _write_json_error(sock, status_int, reason, mesg):  # noqa: ANN001 - gunicorn's signature
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason,
                       "status": status_int}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = _write_json_error
