"""The convert stage on a folder of mixed layouts: each file's format found from its content."""

from __future__ import annotations

import json
from pathlib import Path

from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.stages.convert import convert_source
from services.ingestor.stages.parallel import ordered_map
from tests.ingestor import builders as b


def test_every_layout_in_one_folder_is_recognised_and_converted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rows = b.alpaca_rows(4)
    b.write_json(src / "alpaca.json", rows[:2])
    (src / "alpaca.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[2:]))
    b.write_json(src / "sharegpt.json", [b.sharegpt_record(i) for i in range(2)])
    conversations = [
        {
            "id": f"c{i}",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        }
        for i in range(3)
    ]
    b.write_json(src / "conversations.json", conversations)
    for i in range(2):
        b.write_json(src / "chat" / f"001_001_00{i}.json", b.camel_chat_record(2, start=i))
        b.write_json(src / "science" / f"1_{i}.json", b.science_record(i))
    (src / "unknown.json").write_text(json.dumps([{"title": "not a dataset"}] * 3))

    with RejectedLog(tmp_path / "rejected.jsonl") as rejected, ordered_map(1) as map_fn:
        result = convert_source(
            "mixed", [src], tmp_path / "out", forced_format=None, seed=0, map_fn=map_fn,
            rejected=rejected,
        )  # fmt: skip
    assert dict(result.formats) == {
        "alpaca": 2,
        "sharegpt": 1,
        "conversation": 1,
        "camel_chat": 2,
        "camel_science": 2,
        "unknown": 1,
    }
    assert result.counts.as_dict() == {"in": 14, "kept": 13, "dropped": {"unknown_format": 1}}
    records = json.loads(result.path.read_text())
    ids = [r["id"] for r in records]
    assert {"c0", "c1", "c2", "sg0", "sg1"} <= set(ids)  # own ids kept
    assert len(set(ids)) == 13
    assert result.path.read_text() == json.dumps(records, indent=2, ensure_ascii=False)
    rejected_line = json.loads((tmp_path / "rejected.jsonl").read_text())
    assert rejected_line["reason"] == "unknown_format"
    assert rejected_line["file"].endswith("unknown.json")


def test_lone_surrogates_become_writable_text(tmp_path: Path) -> None:
    src = tmp_path / "chat.json"
    src.write_text(
        '[{"id": "s\\ud800", "conversations": [{"from": "human", "value": "hi \\ud83d there"},'
        ' {"from": "gpt", "value": "ok"}]}]'
    )
    with RejectedLog(tmp_path / "rejected.jsonl") as rejected, ordered_map(1) as map_fn:
        result = convert_source(
            "chat", [src], tmp_path / "out", forced_format=None, seed=0, map_fn=map_fn,
            rejected=rejected,
        )  # fmt: skip
    (record,) = json.loads(result.path.read_text(encoding="utf-8"))
    assert record == {
        "id": "s?",
        "conversations": [{"from": "human", "value": "hi ? there"}, {"from": "gpt", "value": "ok"}],
    }
