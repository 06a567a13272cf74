"""ShareGPT cleaning, as FastChat's cleaner does it: HTML to markdown with the ChatGPT page's
noise removed (code-block labels, "Copy code", regenerate counters), a status per sample
(``too_short``, ``wrong_format``, ``blocked_words``, ``parser_error``), and de-duplication by id
and by (first gpt reply, number of turns) in input order."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import markdownify
from bs4.exceptions import ParserRejectedMarkup

from services.ingestor.formats.fast_markdown import Unsupported, markdownify_fast
from services.ingestor.formats.records import (
    HUMAN,
    ROLES,
    RecordProblem,
    conversation,
    own_id,
    turn,
)

BLOCKED_WORDS = ("openai", "chatgpt")

_DIV_OPEN = re.compile(r"<div.*?>")
_SPAN_OPEN = re.compile(r"<span.*?>")
# ```<label>Copy code<code>``` as rendered by the ChatGPT page -> a proper fenced block.
_CODE_WITH_LABEL = re.compile(r"```\s*(.*?)(?:Copy code)+(.+?)\s*?```", re.DOTALL)
_REGENERATE_COUNTER = re.compile(r"\d+ / \d+")
_COPY_CHARS = re.compile(r"Copy\d+ chars / \d+ words")
_EMPTY_CODE_BLOCK = re.compile(r"```(.*?)Copy code\s*```")


def html_to_markdown(value: str) -> str:
    """Rewrite one turn; may raise ParserRejectedMarkup/AssertionError from the HTML parser."""
    value = _DIV_OPEN.sub("", value)  # lets code-block indentation survive
    value = _SPAN_OPEN.sub("", value)  # lets underscores in code survive
    try:
        value = markdownify_fast(value).strip()
    except (Unsupported, ParserRejectedMarkup):  # markdownify itself, which raises the
        value = markdownify.markdownify(value).strip()  # parser's errors where there are any
    value = _CODE_WITH_LABEL.sub(r"```\g<1>\n\g<2>\n```", value)
    counter = _REGENERATE_COUNTER.match(value)
    if counter:
        value = value[counter.end() :]
    value = _COPY_CHARS.sub("", value)
    value = _EMPTY_CODE_BLOCK.sub("", value)
    return value.replace("\n\n\n", "\n").strip()


def contains_blocked_words(value: str) -> bool:
    lowered = value.lower()
    return any(word in lowered for word in BLOCKED_WORDS)


def _check_shape(record: Any) -> None:
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list):
        raise RecordProblem("missing_fields", "no conversations list")
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("from"), str):
            raise RecordProblem("missing_fields", "turn without a role")
        if not isinstance(t.get("value"), str):
            raise RecordProblem("missing_fields", "turn without a text value")


def clean_sharegpt(record: Any, record_id: str) -> dict[str, Any]:
    """One cleaned sample, or RecordProblem with the status as reason: ``too_short``,
    ``wrong_format``, ``blocked_words`` or ``parser_error``. The sample keeps its own id."""
    _check_shape(record)
    turns = list(record["conversations"])
    if len(turns) <= 1:
        raise RecordProblem("too_short")
    if turns[0]["from"] != HUMAN:
        turns = turns[1:]
    if len(turns) <= 1:
        raise RecordProblem("too_short")
    if turns[-1]["from"] == HUMAN:
        turns = turns[:-1]
    if len(turns) <= 1:
        raise RecordProblem("too_short")
    cleaned = []
    for i, t in enumerate(turns):
        if t["from"] != ROLES[i % 2]:
            raise RecordProblem("wrong_format", f"turn {i} is from {t['from']!r}")
        if contains_blocked_words(t["value"]):
            raise RecordProblem("blocked_words")
        try:
            cleaned.append(turn(t["from"], html_to_markdown(t["value"])))
        except (ParserRejectedMarkup, AssertionError) as exc:
            raise RecordProblem("parser_error", str(exc)[:200]) from exc
    return conversation(own_id(record, record_id), cleaned)


def dedup_keys(sample: dict[str, Any]) -> tuple[bytes, bytes]:
    """16-byte digests of the id and of (first gpt reply, number of turns)."""
    turns = sample["conversations"]

    def digest(*parts: str) -> bytes:
        return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).digest()

    return digest(sample["id"]), digest(turns[1]["value"], str(len(turns)))


class ShareGPTDeduplicator:
    """Remembers kept samples as digests, so memory stays small for ~100k samples."""

    def __init__(self) -> None:
        self._ids: set[bytes] = set()
        self._values: set[bytes] = set()

    def duplicate_reason(self, keys: tuple[bytes, bytes]) -> str | None:
        """``duplicate_id``/``duplicate_value`` for a repeat, else None (and remember it)."""
        id_key, value_key = keys
        if id_key in self._ids:
            return "duplicate_id"
        if value_key in self._values:
            return "duplicate_value"
        self._ids.add(id_key)
        self._values.add(value_key)
        return None
