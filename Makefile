# Two commands do all set-up: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
LS_VENV ?= .ls-venv
PY      = $(VENV)/bin/python
PORT   ?= 9090
STAMP   = $(VENV)/.installed
LS_STAMP = $(LS_VENV)/.installed

.PHONY: venv ls-venv serve test test-unit test-e2e bench-speed bench-al bench-latency clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# label-studio-sdk pins opencv-python-headless; the contrib build of the same
	# version adds cv2.ximgproc (SLIC). Installed over it, files replaced in place.
	$(PY) -m pip install -q --no-deps --force-reinstall opencv-contrib-python-headless==4.12.0.88
	$(PY) -c "import cv2, cv2.ximgproc; print('cv2', cv2.__version__, 'with ximgproc')"
	touch $@

venv: $(STAMP)

# A real Label Studio server for the end-to-end tests, in its own environment.
$(LS_STAMP):
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q label-studio==1.23.2
	touch $@

ls-venv: $(LS_STAMP)

serve: venv
	PORT=$(PORT) $(PY) _wsgi.py

test: venv ls-venv
	LS_VENV=$(abspath $(LS_VENV)) $(PY) -m pytest -q tests

test-unit: venv
	$(PY) -m pytest -q tests -m "not e2e"

test-e2e: venv ls-venv
	LS_VENV=$(abspath $(LS_VENV)) $(PY) -m pytest -q tests -m e2e

# Benchmarks (results under bench/results/); DATA is the CamVid root.
DATA ?= ../shared/data/camvid
bench-speed: venv
	OMP_NUM_THREADS=1 $(PY) bench/speed.py --data $(DATA)

bench-al: venv
	bench/camvid_al.sh $(DATA)

bench-latency: venv
	OMP_NUM_THREADS=1 $(PY) bench/latency.py --data $(DATA)

clean:
	rm -rf $(VENV) $(LS_VENV) .pytest_cache
