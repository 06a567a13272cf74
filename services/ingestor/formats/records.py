"""The common conversation record and the checks every stage shares.

A record is ``{"id": str, "conversations": [{"from": "human"|"gpt", "value": str}, ...]}``;
valid training samples alternate human, gpt, ... starting with human.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

HUMAN = "human"
GPT = "gpt"
ROLES = (HUMAN, GPT)


def safe_text(text: str) -> str:
    """Lone UTF-16 surrogates (``"\\ud83d"`` escapes in scraped JSON) cannot be written as
    UTF-8; they become "?" instead of crashing a writer later."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def turn(role: str, value: str) -> dict[str, str]:
    return {"from": role, "value": safe_text(value)}


def conversation(record_id: str, turns: list[dict[str, str]]) -> dict[str, Any]:
    return {"id": safe_text(record_id), "conversations": turns}


def own_id(record: dict[str, Any], fallback_id: str) -> str:
    """The record's own id as text, else ``fallback_id``."""
    value = record.get("id")
    return str(value) if value is not None else fallback_id


def normalized(record: dict[str, Any], fallback_id: str) -> dict[str, Any]:
    """Only the id and the turns of a conversation-shaped record, as text that can be written
    (input from elsewhere may lack ids, carry extra keys or hold undecodable characters)."""
    turns = [turn(t["from"], t["value"]) for t in record["conversations"]]
    return conversation(own_id(record, fallback_id), turns)


def derived_uuid4(seed: int, source: str, index: int) -> str:
    """A UUID4-shaped id drawn from (seed, source, position) instead of the OS random source, so
    the same inputs and seed give the same dataset and the same content hash."""
    digest = hashlib.sha256(f"{seed}\0{source}\0{index}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def structure_problem(record: Any) -> str | None:
    """Why a record is not a conversation record at all (``missing_fields``/``wrong_roles``).

    Pairs of the even-length prefix must be (human, gpt); a trailing odd turn may be either role
    (CAMEL's extra-turn rule produces one, and the splitter drops it).
    """
    if not isinstance(record, dict):
        return "missing_fields"
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return "missing_fields"
    if "id" in record and not isinstance(record["id"], str | int):
        return "missing_fields"
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("value"), str) or "from" not in t:
            return "missing_fields"
        if t["from"] not in ROLES:
            return "wrong_roles"
    paired = len(turns) - len(turns) % 2
    for i in range(paired):
        if turns[i]["from"] != ROLES[i % 2]:
            return "wrong_roles"
    return None


def roles_alternate(turns: list[dict[str, str]]) -> bool:
    """Valid training sample: non-empty, human/gpt alternating, starting with human."""
    return bool(turns) and all(t.get("from") == ROLES[i % 2] for i, t in enumerate(turns))


# Reasons that mean "this input is malformed" (quarantined in rejected.jsonl), as opposed to
# policy drops (too short, language, duplicates ...) that are only counted.
QUARANTINE_REASONS = frozenset(
    {
        "invalid_json",
        "unreadable_file",
        "unknown_format",
        "missing_fields",
        "wrong_roles",
        "wrong_format",
        "parser_error",
    }
)


class RecordProblem(Exception):
    """A record that cannot become a conversation; ``reason`` is its manifest counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
