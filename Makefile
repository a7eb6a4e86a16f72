# Two commands for a newcomer: `make demo` and `make test`. Both create .venv/ from the pinned requirements
# the first time (about 2-3 minutes, ~6 GB: torch's CUDA build) and reuse it afterwards; the venv is rebuilt
# only when requirements*.txt or pyproject.toml change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medimg-installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: setup demo test lint typecheck unit lab bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/medimg demo --out outputs/demo

lint: $(STAMP)
	$(BIN)/ruff check medimg tests benchmarks
	$(BIN)/ruff format --check medimg tests benchmarks
	$(BIN)/hadolint --failure-threshold warning docker/Dockerfile
ifneq ($(NOTEBOOKS),)
	$(BIN)/nbstripout --verify $(NOTEBOOKS)
endif

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest
ifneq ($(NOTEBOOKS),)
	# every notebook runs top to bottom on the CPU (about 2 minutes), outputs are not written back
	$(BIN)/pytest --nbmake -p no:cacheprovider $(NOTEBOOKS)
endif

test: lint typecheck unit

lab: $(STAMP)
	# JupyterLab on 127.0.0.1 only, with a random token (printed in the URL below); same environment as the CLI.
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --no-browser --ServerApp.root_dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	for b in io models train explain dicom_seg plan; do $(BIN)/python benchmarks/$${b}_bench.py --update-md || exit 1; done

clean:
	rm -rf outputs .pytest_cache .mypy_cache .ruff_cache
