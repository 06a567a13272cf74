"""The conversation log: the original's JSON-lines records, one daily file, safe under threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from services.webui.chat import ChatState, GenerationParams
from services.webui.chat_log import ChatLog, chat_record, vote_record
from shared.conversation import get_conv_template


def _state() -> ChatState:
    conv = get_conv_template("vicuna_v1.1")
    conv.append_message(conv.roles[0], "hi")
    conv.append_message(conv.roles[1], "hello")
    return ChatState(model="m", conversation=conv, conv_id="c1")


def test_chat_and_vote_records_go_to_the_days_file(tmp_path: Path) -> None:
    log = ChatLog(tmp_path / "logs")
    start = 1_767_225_599.5  # 2025-12-31T23:59:59.5Z
    record = chat_record(
        _state(), GenerationParams(0.2, 0.9, 64), start, start + 1.23456, "1.2.3.4"
    )
    path = log.append(record)

    assert path == tmp_path / "logs" / "2026-01-01-conv.json"
    [line] = path.read_text().splitlines()
    stored = json.loads(line)
    assert stored == {
        "tstamp": round(start + 1.23456, 4),
        "type": "chat",
        "model": "m",
        "gen_params": {"temperature": 0.2, "top_p": 0.9, "max_new_tokens": 64},
        "start": start,
        "finish": round(start + 1.23456, 4),
        "state": _state().to_dict(),
        "ip": "1.2.3.4",
    }
    vote = vote_record("downvote", "m", _state(), "5.6.7.8")
    assert set(vote) == {"tstamp", "type", "model", "state", "ip"}
    assert vote["type"] == "downvote" and vote["state"]["conv_id"] == "c1"


def test_concurrent_appends_keep_whole_lines(tmp_path: Path) -> None:
    log = ChatLog(tmp_path)
    state = _state()

    def write() -> None:
        for _ in range(50):
            log.append(vote_record("flag", "m", state, "ip"))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [path] = tmp_path.glob("*-conv.json")
    lines = path.read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["type"] == "flag" for line in lines)
