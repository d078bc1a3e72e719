# agora — one-command install, tests and demo. Everything installs into .venv from this repo's files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU/CUDA build of torch that installs from this machine's local wheel cache; GPU users may set
# TORCH_SPEC to the build matching their CUDA (see README "GPU install").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
MODEL ?= models/demo

.PHONY: install test demo demo-train bench-render clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The main job on the shipped demo model (MODEL=models/demo), offline on a CPU; out/index.html shows it.
demo: install
	MODEL=$(MODEL) bash scripts/demo.sh

# Training the demo config from scratch (CPU), then its samples and curve in out/index.html.
demo-train: install
	MODEL=$(MODEL) bash scripts/demo_train.sh

bench-render: install
	$(PY) benchmarks/render.py

clean:
	rm -rf out .pytest_cache
