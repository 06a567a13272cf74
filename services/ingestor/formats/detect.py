"""Recognising a record format from content, for local files and URLs whose origin is unknown.

A file's format is decided on its first records; conversation-shaped files count as ShareGPT
when their values carry HTML markup (they then need the HTML cleaner), else as the common
conversation format.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from services.ingestor.formats import (
    ALPACA,
    CAMEL_CHAT,
    CAMEL_SCIENCE,
    CONVERSATION,
    SHAREGPT,
)

SAMPLE_RECORDS = 32
_HTML_TAG = re.compile(
    r"<(?:div|span|p|pre|code|ol|ul|li|br|hr|h[1-6]|table|tr|td|th|a|b|i|strong|em|blockquote)"
    r"(?:\s[^>]*)?/?>",
    re.IGNORECASE,
)
_CONVERSATION_LIKE = "conversation_like"


def _record_kind(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    lowered = {str(k).lower(): v for k, v in record.items()}
    if "conversations" in lowered:
        return _CONVERSATION_LIKE
    if "instruction" in lowered and "output" in lowered:
        return ALPACA
    messages = [v for k, v in lowered.items() if "message_" in k]
    if any(isinstance(m, dict) and "role_type" in m for m in messages):
        return CAMEL_CHAT
    if isinstance(lowered.get("message_1"), str) and isinstance(lowered.get("message_2"), str):
        return CAMEL_SCIENCE
    return None


def has_html(record: Any) -> bool:
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list):
        return False
    return any(
        isinstance(t, dict) and isinstance(t.get("value"), str) and _HTML_TAG.search(t["value"])
        for t in turns
    )


def detect_format(records: list[Any]) -> str | None:
    """The format most of ``records`` have, or None when none is recognised."""
    kinds = Counter(k for k in map(_record_kind, records) if k)
    if not kinds:
        return None
    kind = kinds.most_common(1)[0][0]
    if kind == _CONVERSATION_LIKE:
        return SHAREGPT if any(has_html(r) for r in records) else CONVERSATION
    return kind
