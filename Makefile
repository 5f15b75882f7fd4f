# Two commands do all set-up on a fresh machine (Python 3.11+ with pip):
#   make reproduce [PROFILE=default|smoke|paper]   run the whole pipeline
#   make test                                      run the test suite (writes only into temporary folders)
# and two more are for readers:
#   make lab                                       JupyterLab at the repository root
#   make floor-env                                 the declared floor versions in a fresh venv, then the tests
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= default
ARGS ?=
PY := $(VENV)/bin/python
FLOOR ?= .venv-floor
# e.g. FLOOR_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" for CPU-only torch wheels
FLOOR_PIP_ARGS ?=

.PHONY: reproduce test install clean-smoke lab floor-env

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

reproduce: $(VENV)/.installed
	$(PY) -m paperlib.pipeline --profile $(PROFILE) $(ARGS)
	if [ "$(PROFILE)" = default ]; then $(PY) -m paperlib.report --profile default; fi

test: $(VENV)/.installed
	$(PY) -m pytest -q $(ARGS)

# At the repository root, so results/executed/ and figures/ are in reach; the kernels import this
# checkout's paperlib (PYTHONPATH), whatever else is installed.
lab: $(VENV)/.installed
	cd "$(CURDIR)" && PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(VENV)/bin/jupyter lab --notebook-dir="$(CURDIR)"

# Every dependency at exactly its declared floor (constraints written from pyproject.toml), then the tests.
floor-env:
	$(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python tests/test_environment.py --floor-constraints > $(FLOOR)/constraints.txt
	$(FLOOR)/bin/python -m pip install $(FLOOR_PIP_ARGS) -c $(FLOOR)/constraints.txt -e '.[test]'
	$(FLOOR)/bin/python -m pytest -q $(ARGS)

clean-smoke:
	rm -rf results/smoke figures/smoke results/executed/smoke
