# Two commands do all set-up on a fresh machine (CPython 3.11 with pip, Linux x86-64):
#   make reproduce [PROFILE=default|smoke|paper|fmnist|fmnist-full] [DOWNLOAD=1]   run the whole pipeline
#   make test                                      run the test suite (writes only into temporary folders)
# and more are for readers and maintainers:
#   make verify [PROFILE=fmnist]                   check the committed results of a profile in minutes
#   make lab                                       JupyterLab at the repository root
#   make lock [UPGRADE=--upgrade]                  regenerate requirements-lock.txt from pyproject.toml
#   make browser-test                              JupyterLab in headless Chromium runs notebooks (Debian packages)
#   make floor-env                                 the declared floor versions in a fresh venv, then the tests
# The venv is installed from requirements-lock.txt (every package at one version, hashes checked);
# LOCK= (empty) installs pyproject.toml's ranges instead, for platforms the lock does not cover.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= default
ARGS ?=
PY := $(VENV)/bin/python
FLOOR ?= .venv-floor
# e.g. FLOOR_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" for CPU-only torch wheels
FLOOR_PIP_ARGS ?=

.PHONY: reproduce test verify install lock clean-smoke lab floor-env browser-test

LOCK ?= requirements-lock.txt
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
UPGRADE ?=

$(VENV)/.installed: pyproject.toml $(LOCK)
ifneq ($(strip $(LOCK)),)
	@$(PYTHON) -c 'import platform, sys; ok = sys.version_info[:2] == (3, 11) and platform.system() == "Linux" and platform.machine() == "x86_64"; sys.exit(0 if ok else f"$(LOCK) pins CPython 3.11 on Linux x86-64; this is Python {platform.python_version()} on {platform.system()} {platform.machine()}. Run with PYTHON=python3.11, or LOCK= to install the ranges of pyproject.toml (numbers then not promised bit-identical to the committed ones)")'
endif
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
ifneq ($(strip $(LOCK)),)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PY) -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' $(LOCK) > $@
else
	$(PY) -m pip install --quiet -e '.[test]'
	echo unlocked > $@
endif

install: $(VENV)/.installed

# Fashion-MNIST profiles first find and check the data (paperlib.train.fashion_mnist): where it is missing they
# install Debian's dataset-fashion-mnist when no password is needed; DOWNLOAD=1 fetches it with torchvision instead.
DOWNLOAD ?=
reproduce: $(VENV)/.installed
	case "$(PROFILE)" in fmnist*) $(PY) -m paperlib.train.fashion_mnist --setup $(if $(filter 1,$(DOWNLOAD)),--download) ;; esac
	$(PY) -m paperlib.pipeline --profile $(PROFILE) $(ARGS)
	case "$(PROFILE)" in default|fmnist) $(PY) -m paperlib.report ;; esac  # the profiles the README shows (REPORTED_PROFILES)

# Two pytest-xdist workers, one per core of the 2-core machine the suite is sized for; each test
# module is one group (tests/conftest.py). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(ARGS)

# Retrains a sample of the committed default networks, recomputes their features, reruns 04-07 from
# the committed features in a temporary root and compares everything with the committed files.
verify: $(VENV)/.installed
	$(PY) -m paperlib.verify --profile $(PROFILE) $(ARGS)

# The lock, from pyproject.toml (test and browser extras included), for CPython 3.11 on Linux x86-64; existing
# pins are kept unless UPGRADE=--upgrade (or --upgrade-package NAME).
lock:
	test -x .venv-lock/bin/uv || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet uv==$(UV_VERSION))
	.venv-lock/bin/uv pip compile pyproject.toml --extra test --extra browser --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" --quiet $(UPGRADE) \
		-o requirements-lock.txt

# At the repository root, so results/executed/ and figures/ are in reach; the kernels import this
# checkout's paperlib (PYTHONPATH), whatever else is installed.
# - git filter: outputs a reader's run leaves in notebooks/*.ipynb (and the reader's Python version)
#   never show in `git status` or a commit: .gitattributes names the nbstripout filter, and the
#   filter's command is set here, in this clone's .git/config (git does not version it).
# - --allow-root only when running as root (containers often are): Jupyter refuses to start as root
#   without it ("Running as root is not recommended"), and it must not be passed needlessly.
# - paperlib.lab.ContentsManager saves notebooks/*.ipynb without outputs (byte-identical to the committed
#   file after a run) and serves results/executed/ read-only (opening one never rewrites it);
#   hide_globs: the file browser hides the egg-info of the editable install (and the usual caches).
# LAB_ARGS: more options for jupyter lab (e.g. --no-browser --port=8899).
LAB_ARGS ?=
LAB_HIDE := ['__pycache__', '*.pyc', '*.pyo', '.DS_Store', '*~', '*.so', '*.dylib', '*.egg-info']
lab: $(VENV)/.installed
	git -C "$(CURDIR)" config filter.nbstripout.clean "'$(abspath $(PY))' -m nbstripout --keep-id --extra-keys metadata.language_info.version"
	git -C "$(CURDIR)" config filter.nbstripout.smudge cat
	git -C "$(CURDIR)" config diff.ipynb.textconv "'$(abspath $(PY))' -m nbstripout -t --keep-id --extra-keys metadata.language_info.version"
	cd "$(CURDIR)" && PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(PY) -m jupyterlab --notebook-dir="$(CURDIR)" \
		$$([ "$$(id -u)" = 0 ] && echo --allow-root) \
		--ServerApp.contents_manager_class=paperlib.lab.ContentsManager \
		--ContentsManager.hide_globs="$(LAB_HIDE)" $(LAB_ARGS)

# A real browser on a temporary clone of this branch: JupyterLab runs 04_q1, 05_q2 and 07 and must leave
# `git status` clean (needs Debian's chromium and chromium-driver, and selenium: pip install -e '.[browser]').
# Not part of `make test`. Screenshots go to BROWSER_OUT.
BROWSER_OUT ?= $(CURDIR)/browser-screenshots
browser-test: $(VENV)/.installed
	$(PY) -c 'import selenium, nbstripout' 2>/dev/null || $(PY) -m pip install --quiet -e '.[browser]'
	PAPERLIB_BROWSER=1 PAPERLIB_BROWSER_OUT="$(BROWSER_OUT)" $(PY) -m pytest -q -p no:cacheprovider tests/browser $(ARGS)

# Every dependency at exactly its declared floor (constraints written from pyproject.toml), then the tests.
floor-env:
	$(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python tests/test_environment.py --floor-constraints > $(FLOOR)/constraints.txt
	$(FLOOR)/bin/python -m pip install $(FLOOR_PIP_ARGS) -c $(FLOOR)/constraints.txt -e '.[test]'
	PAPERLIB_FLOOR_ENV=1 $(FLOOR)/bin/python -m pytest -q $(ARGS)

clean-smoke:
	rm -rf results/smoke figures/smoke results/executed/smoke
