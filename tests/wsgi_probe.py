"""A tiny WSGI app for the gunicorn worker tests (tests/test_gunicorn_worker.py)."""

import json
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ignore":  # answers without reading the body, as a 405 does
        body = b'{"error": "method not allowed"}'
        start_response("405 METHOD NOT ALLOWED", [("Content-Type", "application/json"),
                                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or 1))
    data = environ["wsgi.input"].read()
    body = json.dumps({"path": path, "bytes": len(data)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
