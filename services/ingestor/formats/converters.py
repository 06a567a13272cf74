"""One entry point for the convert stage's workers: a raw unit and a format in, a conversation
record or a reason out. Runs in pool processes, so it takes and returns plain picklable data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from services.ingestor.files.writers import list_item_json
from services.ingestor.formats import ALPACA, CAMEL_CHAT, CAMEL_SCIENCE, CONVERSATION, SHAREGPT
from services.ingestor.formats.alpaca import convert_alpaca
from services.ingestor.formats.camel import convert_camel_chat, convert_camel_science
from services.ingestor.formats.conversation import convert_conversation
from services.ingestor.formats.records import QUARANTINE_REASONS, RecordProblem
from services.ingestor.formats.sharegpt import clean_sharegpt, dedup_keys

CONVERTERS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    CAMEL_CHAT: convert_camel_chat,
    CAMEL_SCIENCE: convert_camel_science,
    ALPACA: convert_alpaca,
    SHAREGPT: clean_sharegpt,
    CONVERSATION: convert_conversation,
}


class ConvertTask(NamedTuple):
    format: str | None
    file: str
    record_id: str
    record: Any = None
    error: str | None = None  # set when the unit could not even be read
    detail: str | None = None


class ConvertOutcome(NamedTuple):
    """A converted record already serialized (the worker does the encoding, not the parent),
    or a reason; a malformed input travels back for quarantine."""

    file: str
    item_json: str | None = None
    dedup_keys: tuple[bytes, bytes] | None = None  # ShareGPT only
    reason: str | None = None
    detail: str | None = None
    rejected_input: Any = None


def convert_task(task: ConvertTask) -> ConvertOutcome:
    """Never raises for bad data."""
    if task.error:
        return ConvertOutcome(task.file, reason=task.error, detail=task.detail)
    if task.format is None:
        detail = "no supported format recognised"
        return ConvertOutcome(task.file, reason="unknown_format", detail=detail)
    try:
        converted = CONVERTERS[task.format](task.record, task.record_id)
    except RecordProblem as problem:
        kept_input = task.record if problem.reason in QUARANTINE_REASONS else None
        return ConvertOutcome(
            task.file, reason=problem.reason, detail=str(problem), rejected_input=kept_input
        )
    keys = dedup_keys(converted) if task.format == SHAREGPT else None
    return ConvertOutcome(task.file, list_item_json(converted), keys)
