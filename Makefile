# One venv for everything; torch is pinned and installed first so pip never resolves a CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
# without their pins (pyproject.toml's eval extra lists what they import; it says why)
NODEPS := timeeval-gutentag==1.5.0 neurokit2==0.2.13

.PHONY: setup tools demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,eval]'
	$(BIN)/pip install -q --no-deps $(NODEPS)
	touch $@

setup: $(VENV)/.installed

# promtool (from Debian's prometheus package, unpacked into the venv, not installed system-wide)
# lets the tests run `promtool check config|rules` and the alert unit tests; best effort.
$(BIN)/promtool: | $(BIN)/python
	@tmp=$$(mktemp -d) && cd $$tmp && \
	  if apt-get download prometheus >/dev/null 2>&1 && dpkg-deb -x prometheus_*.deb x; then \
	    cp x/usr/bin/promtool $(abspath $(BIN))/promtool; \
	  else echo "promtool unavailable (no Debian prometheus package): its tests will skip"; fi; \
	  rm -rf $$tmp

tools: $(BIN)/promtool

# The demo has its own store, replaced on every run (--fresh: it is only ever a demo store), so
# `make demo` runs again and again and never touches ./neurogate.db, where your own runs go.
demo: setup  ## run the main job on the built-in demo stream (no servers)
	$(BIN)/neurogate run --store demo.db --fresh --out flagged.jsonl

test: setup tools  ## lint, type-check the engine, run the test suite
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) build *.egg-info
