# dbsal ML backend for Label Studio.
# CPU by default; for NVIDIA GPUs build with a CUDA runtime base image, e.g.
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 .
# (the torch wheel in requirements.txt is a CUDA build that also runs on the CPU).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=9090 \
    HOST=0.0.0.0 \
    MODEL_DIR=/data/models \
    WORKERS=1 \
    THREADS=8

# CUDA base images come without Python; the python image has it already.
RUN apt-get update \
    && (command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3 python3-venv) \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN python3 -m venv /venv \
    && /venv/bin/pip install -r requirements.txt \
    && /venv/bin/pip install --no-deps --force-reinstall opencv-contrib-python-headless==4.12.0.88 \
    && /venv/bin/python -c "import cv2.ximgproc"
ENV PATH=/venv/bin:$PATH

COPY dbsal_backend ./dbsal_backend
COPY model.py _wsgi.py ./

VOLUME /data
EXPOSE 9090
# One worker process: the training scheduler and its state live in that process; threads serve
# requests while training runs in the background.
CMD gunicorn --bind ${HOST}:${PORT} --workers ${WORKERS} --threads ${THREADS} --timeout 0 _wsgi:app
