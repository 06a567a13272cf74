"""Inputs already in the common conversation format (spec §1.1): validated, not rewritten."""

from __future__ import annotations

from typing import Any

from services.ingestor.records import RecordProblem, conversation, structure_problem, turn


def convert_conversation(record: Any, record_id: str) -> dict[str, Any]:
    """Keeps the record's own id (else ``record_id``) and only the id and turns."""
    problem = structure_problem(record)
    if problem:
        raise RecordProblem(problem)
    own_id = record.get("id")
    turns = [turn(t["from"], t["value"]) for t in record["conversations"]]
    return conversation(str(own_id) if own_id is not None else record_id, turns)
