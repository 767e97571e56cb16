# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Each creates .venv and installs the package with its extras the first time.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e '.[cpu,dev,export,openvino]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fashion-gluon demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --durations=15 tests

clean:
	rm -rf runs .pytest_cache
