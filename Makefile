# The two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Keep Numba's and lazyfuse's caches inside the checkout so runs never touch ~/.cache.
export LAZYFUSE_CACHE_DIR ?= $(CURDIR)/.cache/lazyfuse
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: demo test lint venv install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

install: venv
	$(PIP) install -q -e '.[viz]'

# torch==2.13.0 first, explicitly: this machine carries its CPU wheel, while a plain `torch`
# requirement would resolve to the newest build with GBs of CUDA packages.
install-test: venv
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'

demo: install
	$(PY) -m lazyfuse.examples.demo

lint: install-test
	$(PY) -m ruff check .

test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) .cache build *.egg-info .pytest_cache .ruff_cache .hypothesis
