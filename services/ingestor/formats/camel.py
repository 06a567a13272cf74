"""CAMEL conversions: role-playing chats (ai_society, code; one JSON file per conversation with
``message_N`` objects) and single-problem science sets (math, physics, chemistry, biology; one
JSON file per problem, ``message_1`` the problem and ``message_2`` its solution)."""

from __future__ import annotations

from typing import Any

from services.ingestor.formats.records import GPT, HUMAN, RecordProblem, conversation, turn

CAMEL_TASK_DONE = "<CAMEL_TASK_DONE>"
# Removed from every message, in this order, each as a plain replace-all (order matters:
# "\nInput: None" must go before "Input:" would leave " None" behind).
SCAFFOLDING = (
    "Instruction: ",
    "\nInput: None",
    "Input: None",
    "\nInput:",
    "Input:",
    "Solution: \n\n",
    "Solution:\n",
    "Solution: ",
    "\nNext request.",
    " Next request.",
)


def strip_scaffolding(text: str) -> str:
    for phrase in SCAFFOLDING:
        text = text.replace(phrase, "")
    return text


def _lowered(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RecordProblem("missing_fields", "record is not an object")
    return {str(k).lower(): v for k, v in record.items()}


def convert_camel_chat(record: Any, record_id: str) -> dict[str, Any]:
    """User/assistant messages paired with zip; an unmatched tail adds one extra turn."""
    rec = _lowered(record)
    keys = [k for k in rec if "message_" in k]
    if not keys:
        raise RecordProblem("missing_fields", "no message_N keys")
    if rec.get("termination_reason") == CAMEL_TASK_DONE:
        keys = keys[:-1]  # the closing <CAMEL_TASK_DONE> turn
    users: list[str] = []
    assistants: list[str] = []
    for key in keys:
        message = rec[key]
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise RecordProblem("missing_fields", f"{key} has no text content")
        role = message.get("role_type")
        if role == "USER":
            users.append(strip_scaffolding(message["content"]))
        elif role == "ASSISTANT":
            assistants.append(strip_scaffolding(message["content"]))
        else:
            raise RecordProblem("wrong_roles", f"{key} has role_type {role!r}")
    turns = []
    for user, assistant in zip(users, assistants, strict=False):
        turns += [turn(HUMAN, user), turn(GPT, assistant)]
    if len(users) > len(assistants):
        turns.append(turn(HUMAN, users[-1]))
    elif len(assistants) > len(users):
        turns.append(turn(GPT, assistants[-1]))
    if not turns:
        raise RecordProblem("too_short", "no message left")
    return conversation(record_id, turns)


def convert_camel_science(record: Any, record_id: str) -> dict[str, Any]:
    """Problem (message_1) and solution (message_2); other keys such as ``topic;`` are unused."""
    rec = _lowered(record)
    problem, solution = rec.get("message_1"), rec.get("message_2")
    if not isinstance(problem, str) or not isinstance(solution, str):
        raise RecordProblem("missing_fields", "message_1 and message_2 must be text")
    return conversation(record_id, [turn(HUMAN, problem), turn(GPT, solution)])
