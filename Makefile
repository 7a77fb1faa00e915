# Two commands on a fresh machine (Python 3.11+ as python3):
#   make run    set up .venv and evaluate the bundled example patient
#   make test   set up .venv and run the test suite
# The set-up installs the package in editable mode with every extra. durable-rules (the C engine) is tried
# first; where it cannot be built (no C compiler, Python 3.13+), the set-up goes on without it and
# backend="auto" runs the plain-Python backend. Another interpreter or folder: make test PYTHON=python3.13 VENV=.venv-3.13

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup run test browser clean

setup: $(INSTALLED)

# CPPFLAGS=-O2 compiles durable-rules with optimisation (its setup.py drops Python's -O flags), --no-cache-dir
# keeps pip from reusing a durable-rules wheel built earlier without it (docs/engine.md).
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	CPPFLAGS=-O2 $(BIN)/python -m pip install --no-cache-dir -e ".[dev,durable]" \
	  || { echo "make: durable-rules did not install (see above); going on without it: backend auto runs the python backend" >&2; \
	       $(BIN)/python -m pip install -e ".[dev]"; }
	@touch $@

run: $(INSTALLED)
	$(BIN)/ipm-cds evaluate examples/patients/facet_rfa_candidate.yaml --as-of 2025-06-02

# -n auto: one pytest-xdist worker per core (the tests share no files, ports or state: each writes under its own
# tmp_path); -n 0 runs them in this one process, e.g. with pdb.
test: $(INSTALLED) browser
	$(BIN)/python -m pytest -n auto

# The report's screenshot test renders a page in Debian's chromium (a browser that downloads itself does not
# work here); installed once when missing, with apt-get (as root, or through sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV)
