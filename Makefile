# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what is missing; both are quick once it is there.

PYTHON_BOOT ?= python3.11
VENV        := .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
STAMP       := $(VENV)/.installed
CHROMIUM    := /usr/bin/chromium
POSE_MODELS := models/pose/pose_landmark_full.tflite models/pose/pose_detection.tflite models/pose/face_detection_short_range.tflite
DEMO_DIR    ?= demo_out
HTTP_PORT   ?= 8080

.PHONY: all install chromium pose-models proto demo demo-web test lint format bench clean

all: install

$(VENV)/bin/python:
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml setup.cfg | $(VENV)/bin/python
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

# Debian's Chromium for the crawler (Playwright drives it; never `playwright install`).
chromium:
	@test -x $(CHROMIUM) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# MediaPipe's pose models ship inside the mediapipe wheel; we take only the two .tflite
# files from it (Apache-2.0) and run them with ai-edge-litert, never installing mediapipe.
pose-models: $(POSE_MODELS)
$(POSE_MODELS) &: | $(STAMP)
	$(PY) -m generators.pairs.pose_models fetch --out models/pose

proto: $(STAMP)
	$(PY) -m proto.build

install: $(STAMP) chromium pose-models proto

demo: install
	$(PY) -m retrieval.demo --out $(DEMO_DIR)

# the same demo catalog, index and generators behind the web page: http://127.0.0.1:$(HTTP_PORT)/ until Ctrl-C
demo-web: install
	$(PY) -m retrieval.demo_web --out $(DEMO_DIR) --http-port $(HTTP_PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info
