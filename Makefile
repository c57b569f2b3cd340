# kdrun — the two README commands are `make train` and `make test`; each sets up a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned to the builds on this machine's disk; pyproject admits a range.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup data train test test-fast test-slow regress regress-full lint bench docs gpu-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

data:  ## Fashion-MNIST (70,000 images) for dataset=fashion_mnist: apt-get install dataset-fashion-mnist
	sh scripts/fashion_mnist.sh

train: setup  ## the default job: embedded MNIST subset, cnn teacher -> mlp student, offline
	$(BIN)/kdrun train

# `make test` runs on TEST_WORKERS processes (pytest-xdist), one torch thread each; tests marked
# `serial` (timings) run alone afterwards. Exit code 5 is pytest's "no test selected".
TEST_WORKERS ?= 2
test: setup  ## the suite on every core (minutes); slow tests are `make test-slow`
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow and not serial"
	$(BIN)/python -m pytest -q -m "serial and not slow" || [ $$? -eq 5 ]

# In-process unit tests (config, schemas, losses, models, cache, one tiny fit): the inner loop.
FAST_TESTS := architecture schema config losses strategy_losses models cache callbacks checkpoint \
	soft_labels docs strategy data
test-fast: setup  ## unit tests only, about 30 s; `make test` adds the end-to-end runs
	$(BIN)/python -m pytest -q $(FAST_TESTS:%=tests/test_%.py)

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

docs: setup  ## rewrite the docs' generated figures from docs/records (tests/test_doc_figures.py checks them)
	$(BIN)/python -m kdrun.report.docfigs

clean:
	rm -rf outputs .pytest_cache
