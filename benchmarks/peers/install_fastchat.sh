#!/bin/bash
# FastChat 0.2.36 in its own venv outside the repo (shared with bench-ingest-peers), plus what
# its model worker needs (accelerate, sentencepiece, protobuf).
set -euo pipefail
D=${PEERS_DIR:-/root/.cache/camel-chat/peers}/fastchat
if [ ! -f "$D/.installed" ]; then
  rm -rf "$D"
  python3 -m venv "$D"
  "$D/bin/pip" install -q --upgrade pip
  "$D/bin/pip" install -q torch==2.13.0
  "$D/bin/pip" install -q fschat==0.2.36 transformers==4.49.0 beautifulsoup4 markdownify==0.11.6
  touch "$D/.installed"
fi
"$D/bin/python" -c "import accelerate, sentencepiece, google.protobuf" 2>/dev/null \
  || "$D/bin/pip" install -q accelerate sentencepiece protobuf
