# Two commands do all set-up on a fresh machine (Python 3.10+ with pip):
#   make reproduce [PROFILE=default|smoke|paper]   run the whole pipeline
#   make test                                      run the test suite
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= default
ARGS ?=
PY := $(VENV)/bin/python

.PHONY: reproduce test install clean-smoke lab

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

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean-smoke:
	rm -rf results/smoke figures/smoke results/executed/smoke
