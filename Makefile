# kdrun — the two README commands are `make train` and `make test`; each sets up a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned to the builds on this machine's disk; pyproject admits a range.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup train test test-slow regress regress-full lint bench gpu-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

train: setup  ## the default job: embedded MNIST subset, cnn teacher -> mlp student, offline
	$(BIN)/kdrun train

test: setup  ## fast suite (seconds to minutes); slow tests are `make test-slow`
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

regress: setup  ## the fast recipes (CI): exit 1 if one falls short of its expected metrics
	$(BIN)/kdrun regress recipes --tier fast --out outputs/regress/fast

regress-full: setup  ## every recipe, incl. the strategy recipes, the T x alpha grid and the headline
	$(BIN)/kdrun regress recipes --tier all --out outputs/regress/all

lint: setup
	$(BIN)/ruff check kdrun tests benchmarks

gpu-check: setup  ## on a CUDA machine: device checks, then a CIFAR-100 cell's speed (docs/performance.md, GPU)
	$(BIN)/python benchmarks/gpu_check.py
	$(BIN)/python benchmarks/gpu_cifar.py

bench: setup  ## every benchmark (about an hour); `make bench SECTIONS="overhead latency"` for some
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run.py $(SECTIONS)

clean:
	rm -rf outputs .pytest_cache
