# Two entry points for a fresh machine: `make demo` and `make test`.
# Torch is installed first from an explicit pin: an unpinned torch requirement on a machine without torch pulls a
# multi-GB CUDA build. Override TORCH for a CUDA cluster image (e.g. TORCH="torch==2.13.0 --index-url ...").
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The demo's Ray is local and short-lived: no token auth (Ray >= 2.59 would otherwise write ~/.ray/auth_token).
demo: setup
	RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 $(BIN)/otce-ray demo

test: setup
	RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/otce-ray bench ot
