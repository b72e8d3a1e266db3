# One venv for everything; torch is pinned and installed first so pip never resolves a CUDA build.
# The package's core needs none of the extras; the tests need them all (pyproject.toml).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
# without their pins (pyproject.toml's eval extra lists what they import; it says why)
NODEPS := timeeval-gutentag==1.5.0 neurokit2==0.2.13

.PHONY: setup tools chromium demo test test-fast lint bench clean typecheck-tree lock

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,eval,all]'
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

# Debian's chromium and its driver let tests/test_report.py open the HTML report in a real
# headless browser (Selenium, by their paths; Playwright's own browser download cannot work here).
# Best effort (apt needs root): without them the browser test skips, except under CI.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium unavailable (apt-get install chromium chromium-driver): the report's browser test will skip"

# docker-compose: Debian's package (1.29, Python) and the Python packages it depends on, unpacked
# into the venv (no root needed) and run by Debian's python3, so that the tests can run
# `docker-compose config`, which parses and interpolates docker-compose.yml without a Docker
# engine. Best effort: without it those tests skip (and fail when CI is set).
COMPOSE_ROOT := $(abspath $(VENV))/opt/docker-compose
$(BIN)/docker-compose: | $(BIN)/python
	@tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
	  deps=$$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
	    --no-breaks --no-replaces --no-enhances docker-compose 2>/dev/null | \
	    grep -E '^python3-' | grep -vxE 'python3-(minimal|distutils|lib2to3)' | sort -u) && \
	  if [ -x /usr/bin/python3 ] && apt-get download docker-compose $$deps >/dev/null 2>&1; then \
	    rm -rf $(COMPOSE_ROOT) && mkdir -p $(COMPOSE_ROOT) && \
	    for f in *.deb; do dpkg-deb -x $$f $(COMPOSE_ROOT) || exit 1; done && \
	    { echo '#!/bin/sh'; \
	      echo 'PYTHONPATH=$(COMPOSE_ROOT)/usr/lib/python3/dist-packages \'; \
	      echo '  exec /usr/bin/python3 -s $(COMPOSE_ROOT)/usr/bin/docker-compose "$$@"'; \
	    } > $(abspath $(BIN))/docker-compose && chmod +x $(abspath $(BIN))/docker-compose; \
	  else echo "docker-compose unavailable (no Debian docker-compose package): its tests will skip"; fi; \
	  rm -rf $$tmp

tools: $(BIN)/promtool $(BIN)/docker-compose chromium

# ops/requirements.lock: every package of the worker image (pyproject.toml's worker extras, the
# CPU build of torch, the build backend), pinned with their hashes, for the image's Python (3.11,
# linux x86_64: run this there). ops/Dockerfile installs it with --require-hashes, wheels only.
# pip-tools runs from its own venv; pip's local configuration is ignored, so only the public
# indexes count (TORCH_SOURCE: where the CPU torch wheel comes from, e.g. --find-links DIR).
# The project's own line (its redis extra names neurogate[postgres]) is dropped: the image
# installs the project itself after the lock.
LOCK := ops/requirements.lock
LOCK_EXTRAS := neuronet postgres redis kafka
TORCH_SOURCE ?= --extra-index-url https://download.pytorch.org/whl/cpu
lock:
	@$(PY) -c 'import sys, platform; assert sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64", "make lock needs Python 3.11 on x86_64 (the image)"'
	$(PY) -m venv build/lock-venv && build/lock-venv/bin/pip install -q pip-tools
	printf 'setuptools>=68\nwheel\n$(TORCH)+cpu\n' > build/lock-build.in
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null build/lock-venv/bin/pip-compile -q \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  $(foreach e,$(LOCK_EXTRAS),--extra $(e)) --index-url https://pypi.org/simple \
	  $(TORCH_SOURCE) -o $(LOCK) pyproject.toml build/lock-build.in
	sed -i '/^# WARNING: pip install will require/,/^    # via neurogate (pyproject.toml)/d' $(LOCK)

# The demo has its own store, replaced on every run (--fresh: it is only ever a demo store), so
# `make demo` runs again and again and never touches ./neurogate.db, where your own runs go.
demo: setup  ## run the main job on the built-in demo stream (no servers)
	$(BIN)/neurogate run --store demo.db --fresh --out flagged.jsonl

# mypy cannot follow setuptools' folder mapping (pyproject.toml): it checks a tree of links that
# mirrors the installed package, so its module names are the ones users import.
TYPECHECK := build/typecheck/neurogate
typecheck-tree:
	@mkdir -p $(TYPECHECK)
	@for f in neurogate/*; do ln -sfn $(abspath .)/$$f $(TYPECHECK)/; done
	@for d in engine cli stream evaluation; do ln -sfn $(abspath $$d) $(TYPECHECK)/$$d; done

# Three pytest workers (pytest-xdist), a test file to each: most of the suite's time is spent
# waiting on subprocesses, brokers and servers (measured: 1,014 tests in 7 min 3 s with two
# workers against 12 min 24 s in one process on this 2-core machine; 2026-12-07, on a machine
# twice as slow, 1,079 tests in 570 s with two workers, 541 s with three). Tests never share a
# database, key prefix or broker.
test: setup tools typecheck-tree  ## lint, type-check, run the test suite
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n 3 --dist loadfile

# The tests marked `slow` (end-to-end runs against the Kafka-protocol broker, the wheel install,
# the secrets sweep over every command: each over ~2 s) are left out here; CI runs them all.
test-fast: setup typecheck-tree  ## lint, type-check, and the tests not marked slow (< 60 s)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not slow"

lint: setup typecheck-tree
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) build *.egg-info
