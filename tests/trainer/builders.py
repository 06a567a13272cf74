"""Small conversation datasets and requests for trainer tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.training import FineTuneRequest


def turn(role: str, value: str) -> dict[str, str]:
    return {"from": role, "value": value}


def conversation(i: int, *texts: str) -> dict[str, Any]:
    roles = ("human", "gpt")
    return {"id": f"c{i}", "conversations": [turn(roles[k % 2], t) for k, t in enumerate(texts)]}


def repetitive_dataset(n: int = 48) -> list[dict[str, Any]]:
    """Two-turn chats with fixed answers: a model learns them in a few steps."""
    out = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 1
        out.append(
            conversation(
                i,
                f"What is {a} plus {b}?",
                f"The answer is {a + b}.",
                "Thanks!",
                "You are welcome.",
            )
        )
    return out


def write_dataset(path: Path, records: list[dict[str, Any]], jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


def tiny_request(model: Path, data: Path, **overrides: Any) -> FineTuneRequest:
    """A fast request for the tiny model: few steps, short rows, a high learning rate."""
    hyperparameters = {
        "max_steps": 8,
        "batch_size": 2,
        "max_length": 128,
        "save_steps": 4,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        **overrides.pop("hyperparameters", {}),
    }
    fields = {
        "model": str(model),
        "training_file": str(data),
        "validation_split": 0.0,
        "method": "lora",
        "template": "vicuna_v1.1",
        **overrides,
    }
    return FineTuneRequest(hyperparameters=hyperparameters, **fields)


class EventLog:
    """Collects ``on_event`` events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def losses(self) -> dict[int, float]:
        return {
            e["data"]["step"]: e["data"]["loss"]
            for e in self.of_type("metrics")
            if "eval_loss" not in e["data"]
        }

    def messages(self, level: str | None = None) -> list[str]:
        return [
            e["message"] for e in self.of_type("message") if level is None or e["level"] == level
        ]
