# dbsal: a Label Studio ML backend, served by gunicorn (gunicorn.conf.py).
# CPU by default; for NVIDIA GPUs build on a CUDA runtime image, e.g.
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 .
# (the torch wheel in requirements.txt is a CUDA build that also runs on the CPU).
# WITH_RAY=1 adds Ray (requirements-ray.txt) for RAY_ADDRESS and the compose "ray" profile.
# PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS (optional, empty by default): more places for pip, e.g. a
# local package index mounted into the build (`podman build -v /srv/pypi:/srv/pypi:ro
# --build-arg PIP_EXTRA_INDEX_URL=file:///srv/pypi/simple`, docs/docker.md). They are not in
# the image's environment, but like any build argument they show in its history: no secrets.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG WITH_RAY=0
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=9090 \
    MODEL_DIR=/data/models \
    THREADS=8 \
    OMP_NUM_THREADS=1

# CUDA base images come without Python; the python image has it already.
RUN apt-get update \
    && (command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3 python3-venv) \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# constraints.txt: every transitive dependency pinned to the versions the tests passed on.
COPY requirements.txt requirements-nodeps.txt requirements-ray.txt constraints.txt ./
RUN python3 -m venv /venv \
    && /venv/bin/pip install -r requirements.txt -c constraints.txt \
    && /venv/bin/pip install --no-deps --force-reinstall -r requirements-nodeps.txt -c constraints.txt \
    && if [ "$WITH_RAY" = "1" ]; then /venv/bin/pip install -r requirements-ray.txt -c constraints.txt; fi \
    && /venv/bin/python -c "import cv2.ximgproc, flask, label_studio_ml.model"
ENV PATH=/venv/bin:$PATH

COPY dbsal_backend ./dbsal_backend
COPY model.py _wsgi.py gunicorn.conf.py ./
RUN useradd --create-home --uid 1000 dbsal && mkdir -p /data && chown dbsal /data
USER dbsal

VOLUME /data
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=4)"
# One worker process: the training scheduler and the serving models live in it; training runs
# in child processes; threads answer requests.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "_wsgi:app"]
