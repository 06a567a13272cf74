"""The conversation log: one JSON line per finished chat turn and per vote, in a daily file.

Same records, appended to the same daily file, as the original web server's
``LOGDIR/YYYY-MM-DD-conv.json``, so existing analysis scripts keep working: ``{"tstamp", "type":
"chat", "model", "gen_params", "start", "finish", "state", "ip"}`` and ``{"tstamp", "type":
"upvote" | "downvote" | "flag", "model", "state", "ip"}``. Dates are UTC.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from services.webui.chat import ChatState, GenerationParams

VoteKind = Literal["upvote", "downvote", "flag"]


class ChatLog:
    """Appends records to ``<directory>/<YYYY-MM-DD>-conv.json``; safe to share between threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def path_for(self, tstamp: float) -> Path:
        day = datetime.fromtimestamp(tstamp, UTC).strftime("%Y-%m-%d")
        return self.directory / f"{day}-conv.json"

    def append(self, record: dict[str, Any]) -> Path:
        path = self.path_for(record["tstamp"])
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line)
        return path


def chat_record(
    state: ChatState, params: GenerationParams, start: float, finish: float, ip: str
) -> dict[str, Any]:
    return {
        "tstamp": round(finish, 4),
        "type": "chat",
        "model": state.model,
        "gen_params": {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
        },
        "start": round(start, 4),
        "finish": round(finish, 4),
        "state": state.to_dict(),
        "ip": ip,
    }


def vote_record(kind: VoteKind, model: str, state: ChatState, ip: str) -> dict[str, Any]:
    return {
        "tstamp": round(time.time(), 4),
        "type": kind,
        "model": model,
        "state": state.to_dict(),
        "ip": ip,
    }
