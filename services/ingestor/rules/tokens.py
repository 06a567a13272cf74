"""Token counting with the target model's fast tokenizer, in batches: the Rust tokenizer spreads
a batch over every core, which is where the split stage's time goes."""

from __future__ import annotations

from pathlib import Path


class TurnTokenCounter:
    """Counts tokens the way the model will see a turn (with the tokenizer's special tokens)."""

    def __init__(self, tokenizer_path: str | Path) -> None:
        from transformers import AutoTokenizer

        self.path = str(tokenizer_path)
        self._tokenizer = AutoTokenizer.from_pretrained(self.path, use_fast=True)
        self._backend = getattr(self._tokenizer, "backend_tokenizer", None)
        if self._backend is not None:
            self._backend.no_truncation()
            self._backend.no_padding()

    @property
    def name(self) -> str:
        return getattr(self._tokenizer, "name_or_path", self.path) or self.path

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self._backend is not None:
            encodings = self._backend.encode_batch_fast(texts, add_special_tokens=True)
            return [len(e) for e in encodings]
        ids = self._tokenizer(texts, add_special_tokens=True)["input_ids"]
        return [len(x) for x in ids]
