"""Exact token counts of GPT-2-style byte-level BPE tokenizers, several times cheaper than
encoding.

Why: counting every turn is most of the split stage, and ``encode_batch_fast`` spends its time
building encodings (a normalized copy with per-byte alignments, a token string per token) that a
count throws away. A byte-level BPE tokenizer whose ``tokenizer.json`` has no normalizer, the
``ByteLevel`` pre-tokenizer with GPT-2's regex and a plain BPE model (no dropout) encodes each
regex piece of a text on its own, so a text's count is the sum of its pieces' counts (plus what
the post-processor adds, a constant). Pieces repeat, so counts are cached and the tokenizer only
encodes what it has not seen.

The regex (``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``)
never puts whitespace inside a piece of non-whitespace, so on ASCII text (where ``\\s`` is the
six ASCII spaces) a text is words (runs of non-whitespace) and whitespace runs, and:

- a word after one plain space is the pieces of ``" " + word`` (the space joins its first
  piece), any other word the pieces of ``word``; a word ends its last piece either way;
- a whitespace run between words, other than one plain space, is the piece ``run[:-1]`` (when
  not empty) and then either a space that joins the next word, or ``run[-1]`` as a piece;
- a whitespace run that ends the text is one piece.

So counting takes one regex split at the whitespace runs that are not one plain space, a
``str.split(" ")`` of what is between them and cached counts of words (with and without the
space) and runs. Texts with other characters, or holding an added token's text (which the
tokenizer matches before splitting), are encoded by the tokenizer as before.
tests/ingestor/test_word_counts.py checks the counts against ``encode_batch_fast`` on generated
ASCII text.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Whitespace runs other than one plain space between words (a lone space at either end of a
# text is left in place: an empty first or last word accounts for it).
OTHER_WHITESPACE = re.compile(r"([\t\n\r\x0b\x0c][ \t\n\r\x0b\x0c]*| [ \t\n\r\x0b\x0c]+)")
MAX_CACHED = 200_000  # words and runs (~30 MB); the caches are cleared when full


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


class _Counts(dict):
    """Token counts of ``prefix + key``, encoded on first use."""

    def __init__(self, backend: Any, prefix: str) -> None:
        super().__init__()
        self.backend = backend
        self.prefix = prefix

    def __missing__(self, key: str) -> int:
        count = len(self.backend.encode(self.prefix + key, add_special_tokens=False))
        self[key] = count
        return count


class PieceCounter:
    """Counts tokens of texts from cached counts of their words and whitespace runs;
    ``backend`` is a ``tokenizers.Tokenizer`` for which ``counts_by_pieces`` holds."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        added = [token.content for token in backend.get_added_tokens_decoder().values()]
        self.added = re.compile("|".join(map(re.escape, added))) if added else None
        processor = backend.post_processor
        self.extra = processor.num_special_tokens_to_add(False) if processor else 0
        self.plain = _Counts(backend, "")  # words after no space, and whitespace pieces
        self.spaced = _Counts(backend, " ")  # words after one space

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
        if len(self.plain) + len(self.spaced) > MAX_CACHED:
            self.plain.clear()
            self.spaced.clear()
        counts = [0] * len(texts)
        others: list[int] = []
        for i, text in enumerate(texts):
            if self._by_pieces(text):
                counts[i] = self._count_ascii(text) + self.extra
            else:
                others.append(i)
        if others:
            encodings = self.backend.encode_batch_fast(
                [texts[i] for i in others], add_special_tokens=True
            )
            for i, encoding in zip(others, encodings, strict=True):
                counts[i] = len(encoding)
        return counts

    def _count_ascii(self, text: str) -> int:
        spaced = self.spaced.__getitem__
        parts = OTHER_WHITESPACE.split(text)  # words between plain spaces, then runs
        if len(parts) == 1:
            words = text.split(" ")
            return self.plain[words[0]] + sum(map(spaced, words[1:]))
        plain = self.plain
        total = 0
        first = plain  # how the next part's first word is counted
        last = len(parts) - 1
        for i in range(0, last + 1, 2):
            if parts[i]:
                words = parts[i].split(" ")
                total += first[words[0]] + sum(map(spaced, words[1:]))
            if i == last:
                break
            run = parts[i + 1]
            if i + 2 == last and not parts[last]:  # the run ends the text
                total += plain[run]
                break
            if len(run) > 1:
                total += plain[run[:-1]]
            if run[-1] == " ":
                first = self.spaced
            else:
                total += plain[run[-1]]
                first = plain
        return total
