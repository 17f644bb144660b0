# The two commands: `make demo` (sim pretraining, quick preset, prints a results table) and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
export MUJOCO_GL ?= egl
# tcmalloc makes CPU training about 3x faster; used when the library is present.
TCMALLOC = $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4))
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
