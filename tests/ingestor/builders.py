"""Fixture writers in the exact upstream layouts (CAMEL tar.gz/zip of one JSON file per record,
ShareGPT JSON parts, Alpaca parquet), with text written here."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ENGLISH = [
    "The committee reviewed the annual budget and approved the new library project.",
    "Please describe how photosynthesis turns sunlight into chemical energy in plants.",
    "A careful plan helps the team finish the work before the end of the month.",
    "Water boils at a lower temperature when you climb high into the mountains.",
    "The students wrote a short report about the history of their small town.",
]
FRENCH = (
    "Le comité a examiné le budget annuel et a approuvé le nouveau projet de bibliothèque. "
    "Les élèves ont écrit un court rapport sur l'histoire de leur petite ville."
)


def english(i: int, words: int = 0) -> str:
    """A distinct English sentence (``i`` keeps values unique); ``words`` pads it longer."""
    base = f"{ENGLISH[i % len(ENGLISH)]} Item number {i}."
    return base + (" and the work goes on" * (words // 5))


def conversation_record(
    record_id: str, *values: str, roles: tuple[str, str] = ("human", "gpt")
) -> dict[str, Any]:
    """A record in the common conversation format whose turns alternate between ``roles``."""
    turns = [{"from": roles[i % 2], "value": value} for i, value in enumerate(values)]
    return {"id": record_id, "conversations": turns}


def camel_message(role_type: str, content: str, role_name: str = "Agent") -> dict[str, Any]:
    return {"role_type": role_type, "role_name": role_name, "role": "user", "content": content}


def camel_messages(*messages: tuple[str, str], **other_keys: Any) -> dict[str, Any]:
    """A CAMEL chat record of ``message_1`` ... from ``(role_type, content)`` pairs."""
    record = {f"message_{i}": camel_message(*m) for i, m in enumerate(messages, 1)}
    return {**record, **other_keys}


def camel_chat_record(
    rounds: int, *, task_done: bool = True, start: int = 0, words: int = 0
) -> dict[str, Any]:
    """An ai_society/code conversation: alternating USER/ASSISTANT messages, then the user's
    <CAMEL_TASK_DONE> turn when ``task_done``."""
    record: dict[str, Any] = {
        "role_1": "Python Programmer",
        "role_2": "Teacher",
        "id": "001_002_003",
        "original_task": "Write a lesson plan.",
        "specified_task": "Write a lesson plan about loops.",
    }
    n = 0
    for r in range(rounds):
        n += 1
        user = f"Instruction: {english(start + r, words)}\nInput: None"
        record[f"message_{n}"] = camel_message("USER", user, "Teacher")
        n += 1
        answer = f"Solution: {english(start + r + 1, words)} Next request."
        record[f"message_{n}"] = camel_message("ASSISTANT", answer, "Python Programmer")
    if task_done:
        n += 1
        record[f"message_{n}"] = camel_message("USER", "<CAMEL_TASK_DONE>", "Teacher")
    record["termination_reason"] = "<CAMEL_TASK_DONE>" if task_done else "max_num_messages"
    record["num_messages"] = n
    return record


def science_record(i: int) -> dict[str, Any]:
    return {
        "role_1": "Physicist_RoleType.ASSISTANT",
        "topic;": "Quantum mechanics",
        "sub_topic": "Tunnelling",
        "message_1": f"Problem {i}: {english(i)}",
        "message_2": f"Solution {i}: {english(i + 1)}",
    }


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def camel_chat_tar(path: Path, records: list[dict[str, Any]]) -> Path:
    """Per-conversation JSON files named ``AAA_UUU_TTT.json`` at the top level."""
    members = {
        f"{i // 100 + 1:03d}_{i % 100 // 10 + 1:03d}_{i % 10 + 1:03d}.json": json.dumps(
            r, indent=4
        ).encode()
        for i, r in enumerate(records)
    }
    return write_tar_gz(path, members)


def science_zip(path: Path, records: list[dict[str, Any]]) -> Path:
    """Per-problem JSON files at the top level, as in camel-ai/physics."""
    members = {
        f"{i // 25 + 1}_{i % 25 + 1}.json": json.dumps(r).encode() for i, r in enumerate(records)
    }
    return write_zip(path, members)


def alpaca_rows(n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        instruction = f"Explain this idea in simple words: {english(i)}"
        input_text = f"{english(i + 2)}" if i % 2 == 0 else ""
        output = f"Here is a simple explanation. {english(i + 3)}"
        text = f"### Instruction:\n{instruction}\n\n### Response:\n{output}"
        rows.append(
            {"instruction": instruction, "input": input_text, "output": output, "text": text}
        )
    return rows


def alpaca_parquet(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def sharegpt_record(i: int, rounds: int = 2, *, sid: str | None = None) -> dict[str, Any]:
    turns = []
    for r in range(rounds):
        turns.append({"from": "human", "value": f"{english(i * 10 + r)}"})
        turns.append(
            {
                "from": "gpt",
                "value": f'<div class="markdown prose"><p>{english(i * 10 + r + 1)} '
                f"<strong>Important</strong> detail {i}.</p><pre><div><span>python</span>"
                f"Copy code<code>print({i})\n</code></div></pre></div>",
            }
        )
    return {"id": sid or f"sg{i}", "conversations": turns}


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))
    return path
