"""Inputs already in the common conversation format: validated, not rewritten."""

from __future__ import annotations

from typing import Any

from services.ingestor.formats.records import RecordProblem, normalized, structure_problem


def convert_conversation(record: Any, record_id: str) -> dict[str, Any]:
    """Keeps the record's own id (else ``record_id``) and only the id and turns."""
    problem = structure_problem(record)
    if problem:
        raise RecordProblem(problem)
    return normalized(record, record_id)
