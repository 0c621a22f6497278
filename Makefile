# The two set-up commands of the README. Both install into .venv first; installing again is a no-op unless
# pyproject.toml changed (the stamp file records the last successful install).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.convsweep-installed
PYTEST_ARGS ?=

.PHONY: install test check demo bench clean data browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the end-to-end (`slow`) and SLURM tests, a few minutes on 2 cores.
check: install
	$(BIN)/python -m pytest -m "not slow and not slurm" $(PYTEST_ARGS)

# The main job on the embedded defaults: a sweep of every conv method on scikit-learn's digits, local
# executor with 2-process DDP, MLflow in ./mlruns.db; prints the ablation table, then writes the sweep's
# one-page HTML report (table, figure, per-trial ERFs and learned shapes) and prints its path.
demo: install
	$(BIN)/convsweep sweep experiments/quickstart.yaml
	$(BIN)/convsweep report experiments/quickstart.yaml

# The real datasets a machine can have without a download: Fashion-MNIST from Debian's dataset-fashion-mnist
# (needs root and apt-get; the tests that use it install it themselves or skip saying why).
data:
	bash pipelines/install_fashion_mnist.sh

# The headless browser the report's test opens the report in (Debian's chromium; needs root and apt-get;
# the test installs it itself or skips saying why).
browser:
	bash orchestrator/install_chromium.sh

bench: install
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs mlruns.db .pytest_cache
