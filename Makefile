# The two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Keep Numba's and lazyfuse's caches inside the checkout so runs never touch ~/.cache.
export LAZYFUSE_CACHE_DIR ?= $(CURDIR)/.cache/lazyfuse
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: demo test test-gpu lint venv install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

install: venv
	$(PIP) install -q -e '.[viz]'

# torch==2.13.0 first, explicitly: this machine carries its CPU wheel, while a plain `torch`
# requirement would resolve to the newest build with GBs of CUDA packages.
install-test: venv
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,cuda]'

demo: install
	$(PY) -m lazyfuse.examples.demo

lint: install-test
	$(PY) -m ruff check .

# The CUDA tests run in their own process, in Numba's CUDA simulator (it must be switched on before
# numba.cuda is first imported); on a GPU machine `make test-gpu` runs them on the device.
test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest tests --ignore=tests/cuda
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest tests/cuda

test-gpu: install-test
	LAZYFUSE_CUDA_TESTS=gpu $(PY) -m pytest tests/cuda

clean:
	rm -rf $(VENV) .cache build *.egg-info .pytest_cache .ruff_cache .hypothesis
