# One command to set up and run the main job, one to set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
MANIFEST ?= examples/originals.csv
OUT ?= predictions.csv

.PHONY: setup test predict benchmark

# torch first, pinned to the CPU build, so that the `cnn` extra's torch range installs nothing more.
TORCH ?= torch==2.13.0

$(BIN)/boneage-features: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,cnn]"
	touch $@

setup: $(BIN)/boneage-features

# Score a manifest of radiographs with the shipped model (default: the full-resolution examples).
predict: setup
	$(BIN)/boneage-features predict $(MANIFEST) -o $(OUT)

test: setup
	$(BIN)/python -m pytest

benchmark: setup
	$(BIN)/python benchmarks/bench_predict.py
