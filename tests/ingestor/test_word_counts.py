"""Token counts from cached word and whitespace-run counts equal the tokenizer's own encodings."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from services.ingestor.rules import word_counts
from services.ingestor.rules.tokens import TurnTokenCounter
from services.ingestor.rules.word_counts import PieceCounter, counts_by_pieces

SNIPPETS = [
    "don't",
    "it's",
    "we're",
    "they've",
    "I'm",
    "you'll",
    "he'd",
    "'S",
    "''s",
    "x's",
    "  ",
    "\t\t",
    "\r\n",
    "\n\n\n",
    " \n ",
    "\x0b",
    "\x0c",
    "\x1c\x1d",
    "\x00",
    "\x7f",
    "```python\n",
    "    return x_1 * 2",
    "1,234.56",
    "a1b2",
    "__init__",
    "<div>",
    "&amp;",
    "...'",
    "?!",
    "http://example.com/a?b=c",
]


def ascii_text(rng: random.Random) -> str:
    """ASCII text mixing words, numbers, punctuation, runs of every ASCII space and control
    characters, contractions and code."""
    parts = []
    for _ in range(rng.randint(0, 60)):
        kind = rng.random()
        if kind < 0.35:
            letters = rng.choices(string.ascii_letters, k=rng.randint(1, 12))
            parts.append("".join(letters))
        elif kind < 0.5:
            parts.append(rng.choice(SNIPPETS))
        elif kind < 0.65:
            parts.append(" " * rng.randint(1, 5))
        elif kind < 0.75:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
        else:
            parts.append("".join(chr(rng.randint(0, 127)) for _ in range(rng.randint(1, 4))))
    return "".join(parts)


def reference_counts(backend: Tokenizer, texts: list[str]) -> list[int]:
    return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=True)]


@pytest.mark.parametrize("model", ["tiny_model_dir", "default_model_dir"])
def test_piece_counts_equal_encodings_on_generated_ascii(
    model: str, request: pytest.FixtureRequest
) -> None:
    backend = Tokenizer.from_file(str(request.getfixturevalue(model) / "tokenizer.json"))
    counter = PieceCounter.of(backend)
    assert counter is not None
    rng = random.Random(0)
    texts = [ascii_text(rng) for _ in range(3000)] + SNIPPETS
    texts += [" lead", "trail ", " both ", " ", "  ", "\n", " \n", "\n x", "x \n\t y ", "a  b"]
    assert counter.count(texts) == reference_counts(backend, texts)
    # a second pass is answered from the caches, with the same counts
    assert counter.plain and counter.spaced
    assert counter.count(texts[:100]) == reference_counts(backend, texts[:100])


def test_other_texts_and_added_tokens_are_encoded(default_model_dir: Path) -> None:
    backend = Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))
    counter = PieceCounter.of(backend)
    assert counter is not None
    texts = [
        "Ünïcödé — 中文 العربية 🙂",
        "a chat turn <|im_start|>user\nhi<|im_end|>",
        "<|endoftext|>",
        "plain",
        "",
    ]
    counts = counter.count(texts)
    assert counts == reference_counts(backend, texts)
    assert counts[2] == 1  # one added token, not its pieces
    assert not any("<|" in word for word in [*counter.plain, *counter.spaced])


def test_the_cache_is_bounded(default_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(word_counts, "MAX_CACHED", 50)
    backend = Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))
    counter = PieceCounter.of(backend)
    assert counter is not None
    rng = random.Random(1)
    for _ in range(20):
        texts = [ascii_text(rng) for _ in range(5)]
        before = len(counter.plain) + len(counter.spaced)
        assert counter.count(texts) == reference_counts(backend, texts)
        if before > 50:  # cleared first: what is cached now comes from these texts
            assert all(any(key in t for t in texts) for key in [*counter.plain, *counter.spaced])


def test_tokenizers_of_other_kinds_are_not_counted_by_pieces(tmp_path: Path) -> None:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    assert not counts_by_pieces(json.loads(tokenizer.to_str()))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert counts_by_pieces(json.loads(tokenizer.to_str()))
    tokenizer.normalizer = normalizers.NFC()
    assert not counts_by_pieces(json.loads(tokenizer.to_str()))
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert not counts_by_pieces(json.loads(tokenizer.to_str()))
    dropout = Tokenizer(models.BPE(unk_token="<unk>", dropout=0.1))
    dropout.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert not counts_by_pieces(json.loads(dropout.to_str()))


def test_turn_counter_counts_by_pieces_where_it_can(default_model_dir: Path) -> None:
    counter = TurnTokenCounter(default_model_dir)
    backend = Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))
    texts = ["Hello there, it's me.", "Ünïcödé"]
    assert counter.count(texts) == reference_counts(backend, texts)
    assert counter._pieces is not None and "Hello" in counter._pieces.plain
