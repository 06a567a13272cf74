"""Exact token counts of GPT-2-style byte-level BPE tokenizers, several times cheaper than
encoding.

Why: counting every turn is most of the split stage, and ``encode_batch_fast`` spends its time
building encodings (a normalized copy with per-byte alignments, a token string per token) that a
count throws away. A byte-level BPE tokenizer whose ``tokenizer.json`` has no normalizer, the
``ByteLevel`` pre-tokenizer with GPT-2's regex and a plain BPE model (no dropout) encodes each
regex piece of a text on its own, so a text's count is the sum of its pieces' counts (plus what
the post-processor adds, a constant). Pieces repeat (words, indentation, punctuation), so their
counts are cached, and the tokenizer only encodes pieces not seen yet.

The pieces come from the standard library's ``re`` with GPT-2's pattern written for ASCII
(``\\p{L}`` is ``[A-Za-z]`` there, ``\\p{N}`` is ``[0-9]`` and ``\\s`` the six ASCII spaces).
Texts with other characters, or holding an added token's text (which the tokenizer matches
before splitting), are encoded by the tokenizer as before. tests/ingestor/test_word_counts.py
checks the counts against ``encode_batch_fast`` on generated ASCII text.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from typing import Any

_SPACE = r" \t\n\x0b\x0c\r"
# GPT-2's pre-tokenizer: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
ASCII_PIECES = re.compile(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_SPACE}A-Za-z0-9]+"
    rf"|[{_SPACE}]+(?![^{_SPACE}])|[{_SPACE}]+"
)
MAX_CACHED_PIECES = 200_000  # ~30 MB of strings and dict slots; cleared when full


def counts_by_pieces(tokenizer_json: dict[str, Any]) -> bool:
    """True when a text's token count is the sum of its GPT-2 regex pieces' counts."""
    model = tokenizer_json.get("model") or {}
    pre = tokenizer_json.get("pre_tokenizer") or {}
    return (
        tokenizer_json.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True) is True
        and not pre.get("add_prefix_space", False)
        and model.get("type") == "BPE"
        and model.get("dropout") is None
        and not tokenizer_json.get("truncation")
        and not tokenizer_json.get("padding")
    )


class PieceCounter:
    """Counts tokens of texts with a cache of piece counts; ``backend`` is a
    ``tokenizers.Tokenizer`` for which ``counts_by_pieces`` holds."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        added = [token.content for token in backend.get_added_tokens_decoder().values()]
        self.added = re.compile("|".join(map(re.escape, added))) if added else None
        self.extra = (
            backend.post_processor.num_special_tokens_to_add(False)
            if (backend.post_processor)
            else 0
        )
        self.cache: dict[str, int] = {}

    @classmethod
    def of(cls, backend: Any) -> PieceCounter | None:
        """A counter for ``backend``, or None where its counts are not sums of pieces."""
        if backend is None or not counts_by_pieces(json.loads(backend.to_str())):
            return None
        return cls(backend)

    def _by_pieces(self, text: str) -> bool:
        return text.isascii() and (self.added is None or self.added.search(text) is None)

    def count(self, texts: list[str]) -> list[int]:
        """Token counts of ``texts`` with the tokenizer's special tokens, as
        ``len(backend.encode(text))`` would give them."""
        counts = [0] * len(texts)
        pieced: list[tuple[int, list[str]]] = []
        others: list[int] = []
        for i, text in enumerate(texts):
            if self._by_pieces(text):
                pieced.append((i, ASCII_PIECES.findall(text)))
            else:
                others.append(i)
        self._learn(chain.from_iterable(pieces for _, pieces in pieced))
        lookup = self.cache.__getitem__
        for i, pieces in pieced:
            counts[i] = sum(map(lookup, pieces)) + self.extra
        if others:
            encodings = self.backend.encode_batch_fast(
                [texts[i] for i in others], add_special_tokens=True
            )
            for i, encoding in zip(others, encodings, strict=True):
                counts[i] = len(encoding)
        return counts

    def _learn(self, pieces: Any) -> None:
        unique = set(pieces)
        missing = list(unique.difference(self.cache))
        if not missing:
            return
        if len(self.cache) + len(missing) > MAX_CACHED_PIECES:
            self.cache.clear()
            missing = list(unique)
        encodings = self.backend.encode_batch_fast(missing, add_special_tokens=False)
        self.cache.update(zip(missing, map(len, encodings), strict=True))
