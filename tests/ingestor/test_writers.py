"""The streaming list writer writes what ``json.dump(records, f, indent=2)`` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.ingestor.files.writers import JsonListWriter, indented_json

RECORDS = [
    {"id": "a", "conversations": [{"from": "human", "value": 'Hi\nthere "quoted" \\ /'}]},
    {"id": "ctrl", "value": "\x00\x01\x1f\x7f\t\n\r\b\f\u2028\u2029"},
    {"id": "unicode", "value": "é 中文 🙂 ‘quotes’"},
    {"id": "surrogate", "value": "\ud800 alone"},
    {"nested": [[1, [2, {}]], [], {"k": None, "t": True, "f": False}], "n": 1.5, "big": 10**20},
    {},
    [],
]


@pytest.mark.parametrize("record", RECORDS)
def test_indented_json_is_the_standard_librarys(record: object) -> None:
    assert indented_json(record) == json.dumps(record, indent=2, ensure_ascii=False)


WRITABLE = [r for r in RECORDS if "surrogate" not in str(r)]  # not UTF-8, by either encoder


@pytest.mark.parametrize("count", [0, 1, len(WRITABLE)])
def test_list_writer_matches_json_dump(tmp_path: Path, count: int) -> None:
    path = tmp_path / "out.json"
    with JsonListWriter(path) as writer:
        for i, record in enumerate(WRITABLE[:count]):
            if i % 2:
                writer.write_line(json.dumps(record, ensure_ascii=False))
            else:
                writer.write(record)
    expected = json.dumps(WRITABLE[:count], indent=2, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == expected
