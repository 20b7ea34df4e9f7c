# Two commands do all set-up: `make serve` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
LS_VENV ?= .ls-venv
PY       = $(VENV)/bin/python
PORT    ?= 9090
STAMP    = $(VENV)/.installed
DEV_STAMP = $(VENV)/.installed-dev
LS_STAMP = $(LS_VENV)/.installed
# One torch thread by default: on a small shared machine OpenMP threads spin (see README).
export OMP_NUM_THREADS ?= 1

.PHONY: venv dev ls-venv serve test test-unit test-e2e test-ui test-docker bench-speed bench-al \
        bench-peanut \
        bench-latency bench-ui bench-scale clean

# constraints.txt pins everything the requirements pull in (the environment the tests passed on).
$(STAMP): requirements.txt requirements-nodeps.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	# label-studio-ml without its stale Flask/Werkzeug pins; opencv-contrib over the SDK's
	# opencv-python-headless (same version, adds cv2.ximgproc for SLIC).
	$(PY) -m pip install -q --no-deps --force-reinstall -r requirements-nodeps.txt -c constraints.txt
	$(PY) -c "import cv2.ximgproc, flask, label_studio_ml.model; print('ok: cv2', cv2.__version__, 'flask', flask.__version__)"
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt constraints.txt
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	touch $@

venv: $(STAMP)
dev: $(DEV_STAMP)

# A real Label Studio server for the end-to-end tests, in its own environment (locked in full:
# requirements-ls.txt).
$(LS_STAMP): requirements-ls.txt
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q -r requirements-ls.txt
	touch $@

ls-venv: $(LS_STAMP)

serve: venv
	$(VENV)/bin/gunicorn -c gunicorn.conf.py --bind $${HOST:-127.0.0.1}:$(PORT) _wsgi:app

test: dev ls-venv
	@if [ -x "$${CHROMIUM:-/usr/bin/chromium}" ]; then echo "browser tests: on ($${CHROMIUM:-/usr/bin/chromium})"; \
	 else echo "browser tests: SKIPPED (no chromium at $${CHROMIUM:-/usr/bin/chromium}; apt-get install -y chromium)"; fi
	LS_VENV=$(abspath $(LS_VENV)) $(PY) -m pytest -q tests

test-unit: dev
	$(PY) -m pytest -q tests -m "not e2e and not ui and not docker"

test-e2e: dev ls-venv
	LS_VENV=$(abspath $(LS_VENV)) $(PY) -m pytest -q tests -m "e2e and not ui"

test-ui: dev ls-venv
	LS_VENV=$(abspath $(LS_VENV)) $(PY) -m pytest -q tests -m ui

# The Docker image run for real (opt-in, not part of `make test`; docs/docker.md): builds it with
# podman (tests/docker/build.sh: installs podman/mmdebstrap/runc if missing, makes a Debian base
# image), then runs the backend in a container against a real Label Studio on loopback, and the
# compose file's dbsal service if podman-compose >= 1.1 is on PATH or in PODMAN_COMPOSE.
DOCKER_IMAGE ?= localhost/dbsal:test
PODMAN_COMPOSE ?=
test-docker: dev ls-venv
	CONTAINERS_CONF=$${CONTAINERS_CONF:-$(abspath tests/docker/containers.conf)} \
	  DBSAL_DOCKER_IMAGE=$(DOCKER_IMAGE) tests/docker/build.sh
	CONTAINERS_CONF=$${CONTAINERS_CONF:-$(abspath tests/docker/containers.conf)} \
	  DBSAL_DOCKER_TESTS=1 DBSAL_DOCKER_IMAGE=$(DOCKER_IMAGE) LS_VENV=$(abspath $(LS_VENV)) \
	  DBSAL_PODMAN_COMPOSE=$(PODMAN_COMPOSE) $(PY) -m pytest -q -s -rs -m docker tests/test_docker.py

# Benchmarks (results under bench/results/); DATA is the CamVid root.
DATA ?= ../shared/data/camvid
bench-speed: dev
	$(PY) bench/speed.py --data $(DATA)

bench-al: dev
	bench/camvid_al.sh $(DATA)
	$(PY) bench/prelabels.py --data $(DATA)
	$(PY) bench/self_labels.py --data $(DATA)

PEANUT ?= ../shared/data/peanut
bench-peanut: dev
	bench/peanut_al.sh $(PEANUT)
	$(PY) bench/peanut_labels.py $(PEANUT)

bench-latency: dev
	$(PY) bench/latency.py --data $(DATA)

bench-ui: dev ls-venv
	LS_VENV=$(abspath $(LS_VENV)) $(PY) bench/ui.py --data $(DATA)

bench-scale: dev ls-venv
	LS_VENV=$(abspath $(LS_VENV)) $(PY) bench/scale.py

clean:
	rm -rf $(VENV) $(LS_VENV) .pytest_cache
