# echomeasure: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: demo test install install-dev system-deps examples bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Re-install when pyproject.toml changes.
# rapidocr-onnxruntime carries the burned-in-text detector (ONNX model inside the wheel); it is
# installed --no-deps because it requires the GUI build of OpenCV, which would overwrite
# opencv-python-headless.  Its other dependencies are in pyproject.toml.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m pip install -q --no-deps 'rapidocr-onnxruntime>=1.4.4,<1.5'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,postgres]'
	$(BIN)/python -m pip install -q --no-deps 'rapidocr-onnxruntime>=1.4.4,<1.5'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Debian packages the tests use for real: Chromium (browser tests), PostgreSQL (store tests) and
# Node.js (the browser's calibration port is run against the Python rule's table).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: install
	$(BIN)/echomeasure demo --host $(HOST) --port $(PORT)

# Static checks first (configured in pyproject.toml: ruff on the tree, mypy on echomeasure/);
# any finding fails the target before the tests run.
# pytest exits 5 when it collects no tests: that is a failure of the suite, say so clearly.
test: install-dev system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

examples: install
	$(BIN)/echomeasure synth examples --cases 2 --seed 7 --kind both --small
	$(BIN)/echomeasure synth examples --cases 1 --seed 7 --kind a4c --small

bench: install
	$(BIN)/echomeasure bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
