# agora — one-command install, tests and demo. Everything installs into .venv from this repo's files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU/CUDA build of torch that installs from this machine's local wheel cache; GPU users may set
# TORCH_SPEC to the build matching their CUDA (see README "GPU install").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: install test demo bench-render clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The whole pipeline that exists so far, on the embedded demo head, offline on a CPU.
demo: install
	bash scripts/demo.sh

bench-render: install
	$(PY) benchmarks/render.py

clean:
	rm -rf out .pytest_cache
