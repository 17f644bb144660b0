# The two commands: `make demo` (sim pretraining, quick preset, prints a results table) and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
export MUJOCO_GL ?= egl
# tcmalloc makes CPU training about 3x faster; preloaded when present (policies/runtime.py finds it,
# after `setup` has made the venv: recipes expand when they run).
TCMALLOC = $(shell $(VENV)/python -m policies.runtime tcmalloc-path)
RUN = LD_PRELOAD=$(TCMALLOC) $(VENV)

.PHONY: setup demo test lint bench
setup:
	@scripts/setup.sh

demo: setup
	$(RUN)/aps-pretrain --preset quick

test: setup
	$(VENV)/ruff check .
	$(RUN)/python -m pytest -q

bench: setup
	$(RUN)/python -m bench.sim
	$(RUN)/python -m bench.learner
