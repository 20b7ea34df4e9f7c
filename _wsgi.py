"""The server entry: ``app = init_app(model_class=DBSALModel)``, served by gunicorn.

``gunicorn -c gunicorn.conf.py _wsgi:app`` (what ``make serve`` and the Docker image run), or
``python _wsgi.py [--host H] [--port P]``, which starts that same command. One worker process:
the training scheduler and the serving models live in it (runs go to child processes);
threads answer requests. Flask's development server is never used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Replace this process with ``gunicorn -c gunicorn.conf.py --bind HOST:PORT _wsgi:app``."""
    parser = argparse.ArgumentParser(description="dbsal: a Label Studio ML backend")
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1",
                        help="listen address (env HOST, default %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 9090),
                        help="port (env PORT, default %(default)s)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    os.chdir(here)
    os.execv(gunicorn, [gunicorn, "-c", str(here / "gunicorn.conf.py"),
                        "--bind", f"{args.host}:{args.port}", "_wsgi:app"])


if __name__ == "__main__":
    main(sys.argv[1:])
else:
    from dbsal_backend.server.logs import configure_logging
    from dbsal_backend.server.runtime import build_runtime, set_runtime
    from dbsal_backend.server.app import init_app
    from dbsal_backend.server.settings import Settings
    from model import DBSALModel

    settings = Settings.from_env()
    configure_logging(settings)
    set_runtime(build_runtime(settings))
    app = init_app(model_class=DBSALModel)
