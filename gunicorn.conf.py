"""gunicorn settings of the backend (``gunicorn -c gunicorn.conf.py _wsgi:app``).

One worker process (the training scheduler and the serving models live in it; training runs in
child processes), threads for requests, timeouts for slow or stuck clients, and JSON error
pages (``dbsal_backend.server.gunicorn_worker``).
"""

import os

bind = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '9090'}"
workers = 1
worker_class = "dbsal_backend.server.gunicorn_worker.ThreadWorker"
threads = int(os.environ.get("THREADS") or 8)
# The worker must check in with the master this often; requests themselves are bounded by
# Label Studio's own timeouts (/predict: 100 s).
timeout = 120
graceful_timeout = 30
keepalive = 5
# A request's line and headers: sizes, and (in the worker) 30 s to arrive in full.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None  # the app logs one line per request, without headers or bodies
errorlog = "-"
loglevel = "warning" if (os.environ.get("LOG_LEVEL") or "").upper() in ("WARNING", "ERROR",
                                                                       "CRITICAL") else "info"
