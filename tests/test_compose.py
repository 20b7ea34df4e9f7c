"""docker-compose.yml and the Dockerfile read statically (no container engine needed): every
environment variable they give the backend is one it reads, and every build argument exists.
``make test-docker`` runs them for real (tests/test_docker.py)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from dbsal_backend.server.settings import Settings

REPO = Path(__file__).resolve().parents[1]
#: read outside Settings: gunicorn.conf.py (THREADS) and torch (OMP_NUM_THREADS)
OTHER_VARIABLES = {"THREADS", "OMP_NUM_THREADS", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PATH"}


def settings_variables() -> set[str]:
    return {f.validation_alias.choices[0] if f.validation_alias else f"DBSAL_{name.upper()}"
            for name, f in Settings.model_fields.items()}


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def test_compose_gives_the_backend_only_variables_it_reads():
    known = settings_variables() | OTHER_VARIABLES
    env = environment(compose()["services"]["dbsal"])
    assert set(env) <= known, f"unknown: {sorted(set(env) - known)}"
    # what it must have: where Label Studio is, and credentials
    assert {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER",
            "BASIC_AUTH_PASS"} <= set(env)


def test_dockerfile_environment_is_read_by_the_backend():
    names = set(re.findall(r"^\s+([A-Z_]+)=", dockerfile().split("ENV ", 1)[1].split("\n\n")[0],
                           re.M))
    names |= set(re.findall(r"^ENV\s+([A-Z_]+)=", dockerfile(), re.M))
    assert {"HOST", "PORT", "MODEL_DIR"} <= names
    known = settings_variables() | OTHER_VARIABLES
    assert names <= known, f"unknown: {sorted(names - known)}"


def test_compose_build_arguments_exist_in_the_dockerfile():
    arguments = set(re.findall(r"^ARG\s+([A-Z_]+)", dockerfile(), re.M))
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            args = build.get("args") or {}
            assert set(args) <= arguments, (name, sorted(set(args) - arguments))
