"""Tests for dbsal_backend.server.gunicorn_worker: whole requests read in the event loop before a
thread gets them (slow clients hold no thread), bounded sizes, JSON errors.

The framing rules are tested as pure functions; the worker runs as a real gunicorn server on
127.0.0.1 with two threads, a 2 s request timeout and a 1 MiB body limit.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from dbsal_backend.server.gunicorn_worker import MAX_HEADER_BYTES, RequestError, RequestProgress

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 2**20


# -- the framing, as pure functions ------------------------------------------------------------
def feed(raw: bytes, cuts: list[int], max_body: int = LIMIT):
    """Feed ``raw`` in pieces; the (end, expects) answers after each piece."""
    progress = RequestProgress(max_body)
    data, answers = bytearray(), []
    for a, b in zip([0] + cuts, cuts + [len(raw)]):
        data += raw[a:b]
        answers.append(progress.update(data))
    return answers


def test_a_request_is_complete_when_its_content_length_has_arrived():
    raw = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    answers = feed(raw, [10, 40, len(raw) - 1])
    assert [end for end, _ in answers] == [None, None, None, len(raw)]
    assert feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n", [])[0][0] == 27
    # One byte at a time (the blank line split every way): complete at the last byte only.
    ends = [end for end, _ in feed(raw, list(range(1, len(raw))))]
    assert ends == [None] * (len(raw) - 1) + [len(raw)]


def test_a_chunked_body_ends_after_its_last_chunk_and_trailers():
    head = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = head + b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert feed(raw, [])[0][0] == len(raw)
    assert feed(raw + b"GET /next", [])[0][0] == len(raw)
    assert all(end is None for end, _ in feed(raw[:-1], []))


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.data())
@settings(max_examples=200, deadline=None)
def test_chunked_framing_does_not_depend_on_how_the_bytes_arrive(chunks, data):
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=10))))
    answers = feed(raw, cuts)
    assert answers[-1][0] == len(raw)
    assert all(end is None for end, _ in answers[:-1])


def test_expect_100_continue_is_reported_until_the_body_is_here():
    raw = (b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
    head = raw.index(b"\r\n\r\n") + 4
    assert feed(raw, [head]) == [(None, True), (len(raw), False)]


@pytest.mark.parametrize("raw, status", [
    (b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY", 400),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES, 431),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n", 431),
])
def test_requests_gunicorn_would_refuse_are_refused_early(raw, status):
    with pytest.raises(RequestError) as caught:
        feed(raw, [])
    assert caught.value.status == status


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives():
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024
    with pytest.raises(RequestError) as caught:
        feed(raw + b"\r\n" + b"400\r\n" + b"x" * 1024, [], max_body=1500)
    assert caught.value.status == 413


# -- the worker in a real gunicorn -------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DBSAL_REQUEST_TIMEOUT": "2", "DBSAL_MAX_REQUEST_BYTES": str(LIMIT),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--worker-class",
         "dbsal_backend.server.gunicorn_worker.ThreadWorker", "--threads", "2", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "wsgi_probe:app"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/up", timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(process.stderr.read().decode()[-2000:]) from None
            time.sleep(0.2)
    yield port, url
    process.terminate()
    process.wait(30)


def raw_exchange(port: int, data: bytes, wait: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except socket.timeout:
            pass
        return out


def test_trickling_clients_hold_no_thread_and_are_cut_off(server):
    port, url = server
    closed_after: list[float] = []

    def trickle() -> None:
        start = time.monotonic()
        request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                for byte in request:  # 30 s at this pace: far past the 2 s timeout
                    sock.send(bytes([byte]))
                    time.sleep(0.2)
                    if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                        break
        except (BlockingIOError, OSError):
            pass
        closed_after.append(time.monotonic() - start)

    threads = [threading.Thread(target=trickle) for _ in range(6)]  # 3x the server's threads
    for t in threads:
        t.start()
    time.sleep(0.5)
    # while they trickle, others are answered (the trickling requests never reached a thread)
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            assert client.get(url + "/health").json()["path"] == "/health"
    for t in threads:
        t.join(60)
    assert len(closed_after) == 6 and max(closed_after) < 20


def test_a_slow_request_is_answered_408_as_json(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"] == 408


def test_bodies_the_app_did_not_read_do_not_cost_the_answer(server):
    _, url = server
    big = b"x" * (LIMIT - 10)
    with httpx.Client(timeout=20) as client:  # one connection, reused
        for method in ("GET", "PUT", "POST", "GET"):
            r = client.request(method, url + "/ignore", content=big)
            assert r.status_code == 405 and r.json()["error"]
        assert client.post(url + "/echo", content=big).json()["bytes"] == len(big)
        assert client.get(url + "/echo").json()["bytes"] == 0


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    port, url = server
    answer = raw_exchange(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                          % (LIMIT + 1))
    assert answer.startswith(b"HTTP/1.1 413")
    assert "DBSAL_MAX_REQUEST_BYTES" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    r = httpx.post(url + "/echo", content=b"x" * (LIMIT + 1), timeout=20)
    assert r.status_code == 413


def test_chunked_pipelined_and_100_continue_requests(server):
    port, _ = server
    chunked = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    closing = b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(port, chunked + chunked + closing)
    assert answer.count(b"HTTP/1.1 200") == 3
    assert answer.count(b'"bytes": 11') == 2 and answer.count(b'"bytes": 0') == 1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"abcd")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert b'"bytes": 4' in rest


def test_errors_gunicorn_answers_itself_are_json(server):
    port, _ = server
    for raw, status in ((b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
                        (b"GARBAGE\r\n\r\n", b"400")):
        answer = raw_exchange(port, raw)
        assert answer.split(b" ", 2)[1] == status
        assert b"application/json" in answer
