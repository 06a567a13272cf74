"""Token counting with the target model's fast tokenizer, in batches: the Rust tokenizer spreads
a batch over every core, which is where the split stage's time goes.

Where the folder's ``tokenizer.json`` is all there is to the tokenizer (a plain fast tokenizer
whose config adds no BOS/EOS rule of its own), it is loaded with ``tokenizers`` alone: importing
transformers pulls in torch, which cost the ingestor seconds at start and about 0.3 GB of memory
for nothing. Anything else goes through ``AutoTokenizer``. Both count the same tokens
(tests/ingestor/test_split.py compares them). Byte-level BPE tokenizers of GPT-2's kind count
by cached regex pieces instead of encoding (``word_counts.py``), with the same result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.ingestor.rules.word_counts import PieceCounter

# Tokenizer classes that are tokenizer.json as it stands (transformers 5 and 4 names).
PLAIN_FAST_CLASSES = {
    None,
    "TokenizersBackend",
    "PreTrainedTokenizerFast",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
}
# Config keys with which transformers rewrites the post-processor or the pre-tokenizer.
REWRITING_KEYS = {"add_bos_token", "add_eos_token", "add_prefix_space", "legacy", "from_slow"}


def plain_tokenizer_file(path: Path) -> Path | None:
    """``tokenizer.json`` when it alone defines the tokenizer, else None."""
    file, config_file = path / "tokenizer.json", path / "tokenizer_config.json"
    if not file.is_file() or not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if config.get("tokenizer_class") not in PLAIN_FAST_CLASSES or REWRITING_KEYS & set(config):
        return None
    return file


class TurnTokenCounter:
    """Counts tokens the way the model will see a turn (with the tokenizer's special tokens)."""

    def __init__(self, tokenizer_path: str | Path, *, plain: bool = True) -> None:
        self.path = str(tokenizer_path)
        self.plain = plain
        self._tokenizer: Any = None
        file = plain_tokenizer_file(Path(self.path).expanduser()) if plain else None
        if file is not None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_file(str(file))
        else:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, use_fast=True)
            self._backend = getattr(self._tokenizer, "backend_tokenizer", None)
        if self._backend is not None:
            self._backend.no_truncation()
            self._backend.no_padding()
        self._pieces = PieceCounter.of(self._backend)
        _LOADED[(self.path, plain)] = self

    @property
    def name(self) -> str:
        if self._tokenizer is None:
            return self.path
        return getattr(self._tokenizer, "name_or_path", self.path) or self.path

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self._pieces is not None:
            return self._pieces.count(texts)
        if self._backend is not None:
            encodings = self._backend.encode_batch_fast(texts, add_special_tokens=True)
            return [len(e) for e in encodings]
        ids = self._tokenizer(texts, add_special_tokens=True)["input_ids"]
        return [len(x) for x in ids]


# The counters loaded in this process, so that pool processes load a tokenizer once per run.
_LOADED: dict[tuple[str, bool], TurnTokenCounter] = {}


def counter_for(path: str, plain: bool) -> TurnTokenCounter:
    """The counter this process holds for a tokenizer, loaded on first use (pool processes load
    each tokenizer once per run)."""
    return _LOADED.get((path, plain)) or TurnTokenCounter(path, plain=plain)
