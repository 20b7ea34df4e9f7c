"""gunicorn's threaded worker, changed for a backend on a network.

- **Whole requests before threads.** gunicorn's ``gthread`` hands a connection to a thread as
  soon as its first byte arrives; the thread then waits for the rest, so a few clients that
  trickle their requests hold every thread and everyone else waits (``/health`` included). Here
  the worker's event loop reads each request (line, headers and body) without blocking, and a
  thread gets it only once it is complete. A request must arrive in full within
  ``DBSAL_REQUEST_TIMEOUT`` seconds of its first byte (an idle kept-alive connection may wait
  gunicorn's ``keepalive`` before sending one); slower ones are answered 408 and closed, and they
  never held a thread.
- **Bounded memory.** A body larger than ``DBSAL_MAX_REQUEST_BYTES`` is refused with 413 before
  it is read; request headers are at most :data:`MAX_HEADER_BYTES`; all requests being read at
  once hold at most :data:`BUFFERED_BYTES_FACTOR` times the body limit (beyond that, 503).
- **The whole body is always read.** An answer to a request whose body the app did not read
  (a ``GET`` or ``PUT`` with a body, answered 405) reaches the client: the body is already
  here, so no unread data makes the kernel reset the connection under the answer.
- **JSON error pages**: the errors gunicorn answers itself (a request line or headers too long:
  414, 431; malformed requests: 400) are ``{"error": ..., "status": ...}`` like the app's.

Plain HTTP/1.x only: TLS belongs in a reverse proxy in front (with TLS configured in gunicorn
itself, requests go to threads as soon as they start, as in ``gthread``).
"""

from __future__ import annotations

import errno
import json
import re
import selectors
import socket
import time
from functools import partial

from gunicorn import util
from gunicorn.workers import gthread

__all__ = ["BUFFERED_BYTES_FACTOR", "MAX_HEADER_BYTES", "RequestError", "RequestProgress",
           "ThreadWorker"]

#: Largest request line plus headers, in bytes.
MAX_HEADER_BYTES = 64 * 1024
#: Requests being read at once hold at most this many times ``DBSAL_MAX_REQUEST_BYTES``.
BUFFERED_BYTES_FACTOR = 4
_READ = 256 * 1024
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)(;[^\r\n]*)?\r\n")


class RequestError(Exception):
    """A request that is answered from the event loop (``status``, ``reason``, ``message``)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class RequestProgress:
    """How far one request has arrived, updated as bytes come in (work per update is linear in
    the new bytes, whatever the framing).

    ``update(data)`` takes everything received for the request so far (``data`` only grows) and
    returns ``(end, expects_continue)``: ``end`` is the length of the complete request (headers
    and body) or None while it is incomplete; ``expects_continue`` when the headers are in, ask
    for ``100 Continue`` and the body is not.

    Raises
    ------
    RequestError
        Headers over :data:`MAX_HEADER_BYTES` (431), a body over ``max_body`` (413), or framing
        gunicorn would refuse anyway (400).
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.body_start: int | None = None
        self.length: int | None = None  # Content-Length framing
        self.chunk_at = 0  # chunked framing: where the next chunk-size line starts
        self.expect = False
        self.scanned = 0  # bytes searched for the end of the headers so far

    def update(self, data: bytes | bytearray) -> tuple[int | None, bool]:
        if self.body_start is None:
            head_end = data.find(b"\r\n\r\n", max(0, self.scanned - 3))
            self.scanned = len(data)
            if head_end < 0 or head_end + 4 > MAX_HEADER_BYTES:
                if head_end >= 0 or len(data) > MAX_HEADER_BYTES:
                    raise RequestError(431, "Request Header Fields Too Large",
                                       f"the request line and headers exceed "
                                       f"{MAX_HEADER_BYTES} bytes")
                return None, False
            self._headers(bytes(data[:head_end]))
            self.body_start = self.chunk_at = head_end + 4
        if self.length is not None:
            end = self.body_start + self.length
            done = len(data) >= end
            return (end if done else None), self.expect and not done
        end = self._chunks(data)
        if end is None and len(data) - self.body_start > self.max_body:
            raise RequestError(413, "Payload Too Large",
                               f"the request body exceeds {self.max_body} bytes "
                               f"(DBSAL_MAX_REQUEST_BYTES)")
        return end, self.expect and end is None

    def _headers(self, head: bytes) -> None:
        lengths, chunked = set(), False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                chunked = chunked or value.endswith(b"chunked")
            elif name == b"expect":
                self.expect = value == b"100-continue"
        if chunked:
            return
        if len(lengths) > 1:
            raise RequestError(400, "Bad Request", "conflicting Content-Length headers")
        length = lengths.pop() if lengths else b"0"
        if not length.isdigit():
            raise RequestError(400, "Bad Request", "Content-Length is not a number")
        self.length = int(length)
        if self.length > self.max_body:
            raise RequestError(413, "Payload Too Large",
                               f"the request body of {self.length} bytes exceeds "
                               f"{self.max_body} bytes (DBSAL_MAX_REQUEST_BYTES)")

    def _chunks(self, data: bytes | bytearray) -> int | None:
        """Where the chunked body ends (after its trailers), or None while incomplete."""
        while True:
            match = _CHUNK_SIZE.match(data, self.chunk_at)
            if match is None:
                line_end = data.find(b"\r\n", self.chunk_at, self.chunk_at + 1024)
                if line_end >= 0 or len(data) - self.chunk_at > 1024:
                    raise RequestError(400, "Bad Request", "malformed chunked body")
                return None
            size = int(match.group(1), 16)
            if size == 0:
                end = data.find(b"\r\n\r\n", match.end() - 2)
                return None if end < 0 else end + 4
            after = match.end() + size
            if len(data) < after + 2:
                return None
            if data[after:after + 2] != b"\r\n":
                raise RequestError(400, "Bad Request", "malformed chunked body")
            self.chunk_at = after + 2


class _BufferedSocket:
    """The connection's socket as the worker threads see it: reads come first from what the
    event loop has already received; a read or write that would wait on the client is bounded
    by the request timeout."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds
        self.buffer = bytearray()

    def _bounded(self, call, *args):  # noqa: ANN001, ANN002
        previous = self._sock.gettimeout()
        self._sock.settimeout(self._seconds)
        try:
            return call(*args)
        finally:
            self._sock.settimeout(previous)

    def recv(self, size: int, *flags: int) -> bytes:
        if self.buffer:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
            return data
        try:
            return self._bounded(self._sock.recv, size, *flags)
        except socket.timeout:
            return b""  # the parser reads this as the client having gone

    def sendall(self, data: bytes, *flags: int) -> None:
        self._bounded(self._sock.sendall, data, *flags)

    def send(self, data: bytes, *flags: int) -> int:
        return self._bounded(self._sock.send, data, *flags)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class ThreadWorker(gthread.ThreadWorker):
    """``gthread`` that reads whole requests in its event loop (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        from .settings import Settings

        settings = Settings.from_env()
        self.request_seconds = float(settings.request_timeout)
        self.max_body = int(settings.max_request_bytes)
        self.max_buffered = BUFFERED_BYTES_FACTOR * self.max_body
        self.buffered = 0
        # conn -> deadline: connections whose next request is being read
        self.reading: dict[gthread.TConn, float] = {}

    # -- connections in ---------------------------------------------------------------------
    def accept(self, listener) -> None:  # noqa: ANN001 - gunicorn's signature
        if self.cfg.is_ssl:
            return super().accept(listener)
        try:
            sock, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, sock, address, listener.getsockname())
        conn.sock = _BufferedSocket(conn.sock, self.request_seconds)
        self._start_reading(conn)

    def on_client_socket_readable(self, conn, client) -> None:  # noqa: ANN001
        """A kept-alive connection starts its next request: read it here, not in a thread."""
        if not isinstance(conn.sock, _BufferedSocket):
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn)
        self._on_readable(conn)

    def _start_reading(self, conn) -> None:  # noqa: ANN001
        """Read the connection's next request in the loop, within the request timeout."""
        conn.progress = RequestProgress(self.max_body)
        conn.continued = False
        conn.sock.setblocking(False)
        self.reading[conn] = time.monotonic() + self.request_seconds
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _fileobj=None) -> None:  # noqa: ANN001
        sock: _BufferedSocket = conn.sock
        try:
            data = sock._sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(conn)
            return
        if self.buffered + len(data) > self.max_buffered:
            self._refuse(conn, RequestError(503, "Service Unavailable",
                                            "too many requests are arriving at once"))
            return
        sock.buffer += data
        self.buffered += len(data)
        self._advance(conn)

    def _advance(self, conn) -> None:  # noqa: ANN001
        """Dispatch the request if it is complete; answer 100 Continue once if it asks."""
        sock: _BufferedSocket = conn.sock
        try:
            end, expects = conn.progress.update(sock.buffer)
        except RequestError as exc:
            self._refuse(conn, exc)
            return
        if expects and not conn.continued:
            conn.continued = True
            try:
                sock._sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
        if end is not None:
            self._dispatch(conn)

    def _dispatch(self, conn) -> None:  # noqa: ANN001
        self.poller.unregister(conn.sock)
        self.buffered -= len(conn.sock.buffer)
        del self.reading[conn]
        conn.data_ready = True
        conn.sock.setblocking(True)
        self.enqueue_req(conn)

    def _forget(self, conn) -> None:  # noqa: ANN001
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.buffered -= len(conn.sock.buffer)
        conn.sock.buffer.clear()
        self.reading.pop(conn, None)
        self.nr_conns -= 1

    def _drop(self, conn) -> None:  # noqa: ANN001
        self._forget(conn)
        conn.close()

    def _refuse(self, conn, error: RequestError) -> None:  # noqa: ANN001
        """Answer ``error`` and close; the close lingers (in a thread) so the answer is not
        cut off by unread data."""
        self._forget(conn)
        raw = conn.sock._sock
        try:
            _write_json_error(raw, error.status, error.reason, error.message)
        except OSError:
            pass
        self.tpool.submit(util.close_graceful, raw)

    def murder_pending(self) -> None:
        """Also close the connections whose request did not arrive in time (408)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self.reading.items()):
            if deadline <= now:
                if conn.sock.buffer:
                    self._refuse(conn, RequestError(
                        408, "Request Timeout", f"the request did not arrive within "
                                                f"{self.request_seconds:g} s"))
                else:
                    self._drop(conn)

    def _keepalive_after(self, conn, keepalive):  # noqa: ANN001 - gunicorn's (thread side)
        """The body the app left unread is here already: drop it without gunicorn's cap and
        wait (which would close the connection under a client about to reuse it)."""
        if keepalive and isinstance(conn.sock, _BufferedSocket):
            return bool(conn.parser.finish_body())
        return super()._keepalive_after(conn, keepalive)

    def finish_request(self, conn, fs) -> None:  # noqa: ANN001
        """As gunicorn's; a request already read ahead (pipelined) is read on in the loop."""
        sock = conn.sock
        if isinstance(sock, _BufferedSocket) and conn.parser is not None:
            ahead = conn.parser.unreader.take_buffered()
            if ahead:
                sock.buffer[:0] = ahead
        super().finish_request(conn, fs)
        if isinstance(sock, _BufferedSocket) and conn in self.keepalived_conns and sock.buffer:
            # the next request is (partly) here already: read it on without waiting
            self.keepalived_conns.remove(conn)
            self.poller.unregister(sock)
            self.buffered += len(sock.buffer)
            self._start_reading(conn)
            self._advance(conn)


def _write_json_error(sock, status_int, reason, mesg):  # noqa: ANN001 - gunicorn's signature
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason,
                       "status": status_int}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = _write_json_error
