"""Alpaca conversion: instruction and input become the human turn, output the gpt
turn. They are joined with one space as the original did, but only when the input is non-empty,
so an instruction without input no longer ends in a stray space."""

from __future__ import annotations

from typing import Any

from services.ingestor.formats.records import GPT, HUMAN, RecordProblem, conversation, turn


def alpaca_prompt(instruction: str, input_text: str) -> str:
    return f"{instruction} {input_text}" if input_text else instruction


def convert_alpaca(record: Any, record_id: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RecordProblem("missing_fields", "record is not an object")
    instruction, output = record.get("instruction"), record.get("output")
    input_text = record.get("input") or ""
    if not isinstance(instruction, str) or not isinstance(output, str):
        raise RecordProblem("missing_fields", "instruction and output must be text")
    if not isinstance(input_text, str):
        raise RecordProblem("missing_fields", "input must be text")
    return conversation(
        record_id, [turn(HUMAN, alpaca_prompt(instruction, input_text)), turn(GPT, output)]
    )
