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

.PHONY: setup setup-zoo demo test bench wheelhouse gpu-check

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

# `make wheelhouse PY=3.12`: the wheels a CUDA host that already has torch needs to run the numerics and extraction
# offline (an air-gapped GPU cluster, or the card of `make gpu-check`), for manylinux x86_64 and Python $(PY), into
# $(WHEELHOUSE) (git-ignored), with a size report; fails above MAX_MIB. The host is assumed to have torch, numpy, scipy,
# pandas, pyarrow, PyYAML, Pillow, scikit-learn (with threadpoolctl), matplotlib, triton and the nvidia-* libraries.
# Ray (79 MB) and boto3 are left out: the Ray-free entry points (otce_score, run_shard) need neither. Downloaded with
# --no-deps, so WHEELS is the whole closure, read from each package's metadata:
#   pot -> numpy, scipy;  flash-sinkhorn -> numpy, torch, triton
#   cityscapesscripts -> numpy, matplotlib, pillow, appdirs, pyquaternion (-> numpy), coloredlogs (-> humanfriendly),
#     tqdm, requests (-> charset-normalizer, idna, urllib3, certifi), typing (standard library: not carried)
#   pytest, for the GPU check's tests -> iniconfig, packaging, pluggy, pygments
PY ?= 3.12
WHEELHOUSE ?= build/wheelhouse
MAX_MIB ?= 60
WHEELS := 'pot>=0.9.5' 'flash-sinkhorn>=0.4.1' 'cityscapesscripts>=2.2' appdirs pyquaternion coloredlogs humanfriendly \
	tqdm requests charset-normalizer idna urllib3 certifi 'pytest>=8' iniconfig packaging pluggy pygments
PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64

wheelhouse:
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(PY) $(PLATFORMS) \
		-d $(WHEELHOUSE) $(WHEELS)
	$(PYTHON) -m pip wheel --quiet --no-deps -w $(WHEELHOUSE) .
	@ls -l $(WHEELHOUSE)/*.whl | awk -v max=$(MAX_MIB) '{ printf "%8.2f MiB  %s\n", $$5 / 2^20, $$9; total += $$5 } \
		END { printf "%8.2f MiB  total, %d wheels (limit MAX_MIB=%d)\n", total / 2^20, NR, max; \
		if (total > max * 2^20) { printf "wheelhouse: %.1f MiB is above MAX_MIB=%d MiB: it would not travel to the card\n", \
		total / 2^20, max; exit 1 } }'

# `make gpu-check` on a card, with the wheelhouse carried to it: installs it offline, runs the CUDA tests, measures,
# writes gpu_check.md and gpu_check.jsonl to $(OUT) (else build/). `DRY=1`: the same script on CPU at tiny sizes.
# Python: the checkout's venv when there is one, else $(PYTHON) (on the card, the system Python with its CUDA torch).
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

gpu-check:
	$(GPU_PYTHON) -m otce_ray.bench.gpu_check $(if $(filter 1 yes true,$(DRY)),--dry) --wheelhouse $(WHEELHOUSE) \
		$(if $(OUT),--out $(OUT))
