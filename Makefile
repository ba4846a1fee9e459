# Two entry points for a fresh machine: `make demo` and `make test`.
# Torch is installed first from an explicit pin: an unpinned torch requirement on a machine without torch pulls a
# multi-GB CUDA build. Override TORCH for a CUDA cluster image (e.g. TORCH="torch==2.13.0 --index-url ...").
# The tests also run the native model formats (the `zoo` extra), whose torchvision wheel imports only beside the torch
# build it was made for: PyPI's pair ZOO_TORCH (a CUDA build, ~5.5 GB, that runs on the CPU), installed over the
# light CPU torch. `make demo` needs neither.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
ZOO_TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin

.PHONY: setup setup-zoo demo test bench

setup: $(VENV)/.installed

setup-zoo: $(VENV)/.installed-zoo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-zoo: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet $(ZOO_TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test,zoo]'
	touch $@

# The demo's Ray is local and short-lived: no token auth (Ray >= 2.59 would otherwise write ~/.ray/auth_token).
demo: setup
	RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 $(BIN)/otce-ray demo

test: setup-zoo
	RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/otce-ray bench ot
