# Two commands for a newcomer: `make demo` and `make test`. Both create .venv/ from the pinned requirements
# the first time (about 2-3 minutes, ~6 GB: torch's CUDA build) and reuse it afterwards; the venv is rebuilt
# only when requirements*.txt or pyproject.toml change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medimg-installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: setup demo test lint typecheck unit lab review bench clean

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

# The reading session as a page with no code (Voila) on 127.0.0.1, behind a random token printed below; the page
# asks the reader's name first. What to read: REVIEW_CASES (folder, dataset.json or CSV case_id,image[,label]),
# REVIEW_CKPT, REVIEW_EXPLANATIONS (from `medimg explain --cases ... --out-dir`), REVIEW_STORE; default: the
# demo's model and held-out reading set, answers in data/reviews.sqlite.
REVIEW_PORT ?= 8866
review: $(STAMP)
	@token=$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(24))'); \
	echo "reading session: http://127.0.0.1:$(REVIEW_PORT)/?token=$$token"; \
	MEDIMG_REVIEW_CASES="$(abspath $(REVIEW_CASES))" MEDIMG_REVIEW_CHECKPOINT="$(abspath $(REVIEW_CKPT))" \
	MEDIMG_REVIEW_EXPLANATIONS="$(abspath $(REVIEW_EXPLANATIONS))" MEDIMG_REVIEW_STORE="$(abspath $(or $(REVIEW_STORE),data/reviews.sqlite))" \
	$(BIN)/voila notebooks/review-app.ipynb --no-browser --Voila.ip=127.0.0.1 --port=$(REVIEW_PORT) --token="$$token"

bench: $(STAMP)
	for b in io models train explain dicom_seg plan review export sites metrics; do $(BIN)/python benchmarks/$${b}_bench.py --update-md || exit 1; done

clean:
	rm -rf outputs .pytest_cache .mypy_cache .ruff_cache
