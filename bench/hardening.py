"""The backend as an attacker and a careless operator find it: figures for the README.

    .venv/bin/python bench/hardening.py [--out bench/results/hardening.json]

Against a real Label Studio 1.23.2 and the backend as a gunicorn server with basic auth, all on
127.0.0.1 (small model settings; the HTTP layer and the image path are the product's):

- **bad requests**: every route with missing/wrong credentials and with a battery of malformed
  bodies, ids, label configs (entity bombs, 100,000 labels, deep nesting), oversized bodies,
  long request lines and many headers; counts answers by status (5xx must be 0) and non-JSON
  answers;
- **SSRF probes**: tasks of a connected project whose image points at Label Studio's API, at
  loopback services, at a link-local metadata address, at a file, and at an allowed origin
  that redirects to loopback, sent to ``/predict`` as Label Studio sends them (the task JSON);
  and a real task whose request data was swapped for the loopback trap; none may be fetched;
- **large images**: a 9000x9000 PNG (a few hundred KB) in a task: time and extra memory of the
  server process with the default pixel limit (refused) and with the limit raised to 100 M
  (EfficientNet-Lite0 scoring at max side 512 with 20 MC passes and 300 superpixels, as the
  product's defaults);
- **slow clients**: 20 connections trickling one byte a second while ``/health`` is timed;
  how long each was held;
- **webhook burst**: 100 annotation webhooks from 8 threads: answer times and runs started.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from backendproc import (LABEL_CONFIG, Backend, annotation_result, make_project,  # noqa: E402
                         wait_for)
from label_studio_sdk import LabelStudio  # noqa: E402
from lsserver import start_label_studio  # noqa: E402

AUTH = ("ls", "a-long-random-password")
#: The product's network (the rest of the settings are the tests' small ones: a first run of a
#: few epochs at 64 px)
MODEL = {"DBSAL_ARCH": "efficientnet_lite0", "DBSAL_PRETRAINED": "true"}


def worker_rss(backend: Backend) -> float:
    """RSS (MB) of the gunicorn worker (the master's child that serves requests)."""
    master = psutil.Process(backend.process.pid)
    children = [c for c in master.children() if "gunicorn" in " ".join(c.cmdline())]
    return sum(c.memory_info().rss for c in children) / 2**20


def bad_requests(b: Backend, project: int) -> dict:
    url = b.url
    deep = "[" * 100_000
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><View>&b;</View>')
    many = ('<View><Image name="i" value="$image"/><BrushLabels name="t" toName="i">'
            + "".join(f'<Label value="l{i}"/>' for i in range(100_000)) + "</BrushLabels></View>")
    nested = "<View>" * 300 + "</View>" * 300
    declared = '<?xml version="1.0" encoding="UTF-8"?>' + LABEL_CONFIG
    bodies = [b"", b"null", b"[]", b"{}", b"\xff\xfe\x00", deep.encode(), b'{"a": ' * 50,
              json.dumps({"project": "\u00b2", "schema": LABEL_CONFIG}).encode(),
              json.dumps({"project": 2**63, "schema": LABEL_CONFIG}).encode(),
              json.dumps({"project": 0}).encode(), json.dumps({"project": -1}).encode(),
              json.dumps({"project": project, "schema": bomb}).encode(),
              json.dumps({"project": project, "schema": many}).encode(),
              json.dumps({"project": project, "schema": nested}).encode(),
              json.dumps({"project": project, "schema": declared}).encode(),
              json.dumps({"tasks": [{"id": i} for i in range(5000)], "project": project}).encode(),
              json.dumps({"tasks": "x", "project": project}).encode(),
              json.dumps({"tasks": [{"id": True}], "project": project}).encode(),
              json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": 987654}}).encode(),
              json.dumps({"action": ["x"], "project": {"id": project}}).encode(),
              b"{" + b'"k": 1, ' * 200_000 + b'"z": 2}']
    statuses: Counter = Counter()
    not_json = 0
    tried = 0
    dropped: list[str] = []
    with httpx.Client(timeout=60) as client:
        for method, path in [("POST", "/setup"), ("POST", "/predict"), ("POST", "/webhook"),
                             ("POST", "/train"), ("GET", "/status"), ("GET", "/versions"),
                             ("GET", "/is_training"), ("GET", "/"), ("PUT", "/predict"),
                             ("GET", "/nowhere")]:
            for auth in (None, ("ls", "wrong"), AUTH):
                for k, body in enumerate(bodies if auth == AUTH else bodies[:2]):
                    tried += 1
                    try:
                        r = client.request(method, url + path, content=body, auth=auth,
                                           params={"project": "²"} if method == "GET" else None,
                                           headers={"Content-Type": "application/json"})
                    except httpx.HTTPError as exc:  # no answer at all: recorded, not hidden
                        statuses[0] += 1
                        dropped.append(f"{method} {path} body {k} ({len(body)} bytes): "
                                       f"{type(exc).__name__}")
                        continue
                    statuses[r.status_code] += 1
                    not_json += not r.headers.get("content-type", "").startswith(
                        "application/json")
        for raw in (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
                    b"GARBAGE\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", b.port), timeout=10) as sock:
                sock.sendall(raw)
                answer = sock.recv(65536).decode("latin1")
            tried += 1
            code = int(answer.split(" ", 2)[1]) if answer.startswith("HTTP/") else 0
            statuses[code] += 1
            not_json += "application/json" not in answer
    return {"requests": tried, "by_status": dict(sorted(statuses.items())),
            "server_errors": sum(v for k, v in statuses.items() if k >= 500),
            "not_json": not_json, "no_answer": dropped}


class Redirector(BaseHTTPRequestHandler):
    """An allowed origin that redirects everything to a loopback service."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(302)
        self.send_header("Location", self.target)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Trap(BaseHTTPRequestHandler):
    """A loopback service nobody should reach; counts its visitors."""

    hits = 0

    def do_GET(self) -> None:  # noqa: N802
        Trap.hits += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def png_9000() -> bytes:
    buffer = io.BytesIO()
    image = np.zeros((9000, 9000, 3), np.uint8)
    image[::500] = 255
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def as_label_studio_sends(ls, project: int, ids: list[int]) -> list[dict]:
    """The tasks' JSON as Label Studio puts it in a /predict request (id, project, data)."""
    r = httpx.get(f"{ls.url}/api/tasks/", headers=ls.headers,
                  params={"project": project, "page_size": 1000, "fields": "all"}, timeout=60)
    by_id = {t["id"]: t for t in r.json()["tasks"]}
    return [{"id": t, "project": project, "data": by_id[t]["data"]} for t in ids]


def large_image(b: Backend, project: int, task: dict) -> dict:
    before = worker_rss(b)
    peak = [before]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], worker_rss(b))
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    start = time.perf_counter()
    r = httpx.post(f"{b.url}/predict", json={"tasks": [task], "project": project},
                   auth=AUTH, timeout=300)
    seconds = time.perf_counter() - start
    time.sleep(0.3)
    stop.set()
    result = r.json()["results"][0] if r.status_code == 200 else {}
    return {"status": r.status_code, "seconds": round(seconds, 2),
            "extra_memory_mb": round(peak[0] - before), "regions": len(result.get("result", [])),
            "refused": r.status_code == 200 and not result.get("result")}


def slow_clients(b: Backend, n: int = 20) -> dict:
    held: list[float] = []
    answers: list[str] = []

    def trickle() -> None:
        start = time.monotonic()
        answer = b""
        try:
            with socket.create_connection(("127.0.0.1", b.port), timeout=120) as sock:
                for char in b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
                    sock.send(bytes([char]))
                    time.sleep(1.0)
                    try:
                        answer = sock.recv(65536, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                    break  # an answer (or the end of the connection)
        except OSError:
            pass
        held.append(time.monotonic() - start)
        answers.append(answer.split(b"\r\n", 1)[0].decode("latin1") or "closed")

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(3)
    latencies = []
    for _ in range(20):
        start = time.perf_counter()
        httpx.get(f"{b.url}/health", timeout=60)
        latencies.append(time.perf_counter() - start)
        time.sleep(0.5)
    for t in threads:
        t.join(120)
    return {"connections": n, "health_seconds_max": round(max(latencies), 3),
            "health_seconds_median": round(sorted(latencies)[len(latencies) // 2], 3),
            "held_seconds_max": round(max(held), 1) if held else None,
            "answers": dict(Counter(answers))}


def burst(b: Backend, project: int) -> dict:
    runs_before = b.log_text().count(f"training run started for project {project}")
    payload = {"action": "ANNOTATION_UPDATED", "project": {"id": project}, "task": {"id": 1}}

    def send(_: int) -> float:
        start = time.perf_counter()
        httpx.post(f"{b.url}/webhook", json=payload, auth=AUTH, timeout=30)
        return time.perf_counter() - start

    with ThreadPoolExecutor(8) as pool:
        times = list(pool.map(send, range(100)))
    wait_for(lambda: (b.status(project) or {}).get("training_state") == "idle", 900,
             "the burst's runs")
    time.sleep(2)
    wait_for(lambda: (b.status(project) or {}).get("training_state") == "idle", 900,
             "the burst's runs")
    return {"webhooks": 100, "answer_seconds_max": round(max(times), 3),
            "runs": b.log_text().count(f"training run started for project {project}")
            - runs_before}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/hardening.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    trap = ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    Redirector.target = f"http://127.0.0.1:{trap.server_address[1]}/x.png"
    redirect = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=redirect.serve_forever, daemon=True).start()
    allowed = f"http://127.0.0.1:{redirect.server_address[1]}"
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ls = start_label_studio(tmp / "ls")
        try:
            sdk = LabelStudio(base_url=ls.url, api_key=ls.token)
            b = Backend("hardening", ls, ls.token, tmp / "models", tmp / "backend.log",
                        auth=AUTH, extra_env={"DBSAL_ALLOWED_IMAGE_ORIGINS": allowed, **MODEL})
            b.start()
            try:
                proj = make_project(ls, sdk, "hardening", 6)
                sdk.ml.create(url=b.url, project=proj.id, title="dbsal", auth_method="BASIC_AUTH",
                              basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
                b.wait_status(proj.id, lambda s: s["seed_batch"], "confirmation", 120)
                for task in b.status(proj.id)["seed_batch"]:
                    sdk.annotations.create(id=task, result=annotation_result(proj.truth[task]))
                b.wait_status(proj.id, lambda s: s["al_step"] >= 1 and s["training_state"]
                              == "idle", "the first run", 600)
                result["bad_requests"] = bad_requests(b, proj.id)
                probes = [f"{ls.url}/api/projects/", "http://127.0.0.1:22/",
                          f"http://127.0.0.1:{trap.server_address[1]}/x.png",
                          "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
                          f"{allowed}/to-loopback.png", "//127.0.0.1/x.png"]
                imported = sdk.projects.import_tasks(
                    id=proj.id, request=[{"data": {"image": p}} for p in probes],
                    return_task_ids=True)
                ids = list(getattr(imported, "task_ids", None) or [])
                sent = as_label_studio_sends(ls, proj.id, ids)
                real = as_label_studio_sends(ls, proj.id, [min(proj.truth)])[0]
                swapped = {**real, "data": {"image": probes[2]}}
                answers = httpx.post(f"{b.url}/predict", auth=AUTH, timeout=120, json={
                    "tasks": sent + [swapped], "project": proj.id}).json()["results"]
                result["ssrf"] = {"probes": probes + ["a real task, its request data swapped "
                                                      "for the loopback trap"],
                                  "regions_returned": [len(a["result"]) for a in answers],
                                  "loopback_trap_hits": Trap.hits}
                (big,) = ls.upload_files(proj.id, {"big.png": png_9000()}).values()
                big = as_label_studio_sends(ls, proj.id, [big])[0]
                result["large_image_default_limit"] = large_image(b, proj.id, big)
                result["slow_clients"] = slow_clients(b)
                result["burst"] = burst(b, proj.id)
            finally:
                b.stop()
            raised = Backend("hardening-100M", ls, ls.token, tmp / "models", tmp / "b2.log",
                             auth=AUTH, extra_env={"DBSAL_MAX_IMAGE_PIXELS": "100000000",
                                                   **MODEL, "DBSAL_MAX_SIDE": "512",
                                                   "DBSAL_MC_SAMPLES": "20",
                                                   "DBSAL_N_SEGMENTS": "300"})
            raised.start()
            try:
                result["large_image_limit_100M"] = large_image(raised, proj.id, big)
            finally:
                raised.stop()
        finally:
            ls.stop()
    result["machine"] = f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
