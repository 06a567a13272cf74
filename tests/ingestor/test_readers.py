"""Streaming readers and format detection from content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.ingestor.files.readers import read_units
from services.ingestor.formats.detect import detect_format
from services.ingestor.sources import HUB_DATASETS, resolve_sources
from shared.datasets import DATASET_SOURCE_KEYS
from tests.ingestor import builders as b


def records_of(path: Path) -> list:
    return [u.record for u in read_units(path) if u.error is None]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([b.camel_chat_record(1)], "camel_chat"),
        ([b.science_record(1)], "camel_science"),
        (b.alpaca_rows(3), "alpaca"),
        ([b.sharegpt_record(1), b.sharegpt_record(2)], "sharegpt"),
        (
            [{"id": "1", "conversations": [{"from": "human", "value": "plain *markdown*"}]}],
            "conversation",
        ),
        ([{"title": "something else"}], None),
        ([], None),
    ],
)
def test_format_is_detected_from_content(records: list, expected: str | None) -> None:
    assert detect_format(records) == expected


def test_json_list_streams_every_item(tmp_path: Path) -> None:
    path = b.write_json(tmp_path / "x.json", [{"a": i} for i in range(50)])
    assert records_of(path) == [{"a": i} for i in range(50)]


def test_truncated_json_list_yields_the_good_items_then_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"a": 1}, {"a": 2}, {"a": 3}])[:-8])
    units = list(read_units(path))
    assert [u.record for u in units[:2]] == [{"a": 1}, {"a": 2}]
    assert units[-1].error == "invalid_json"


def test_json_lines_with_a_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{broken\n\n{"a": 2}\n')
    units = list(read_units(path))
    assert [(u.record, u.error) for u in units] == [
        ({"a": 1}, None),
        (None, "invalid_json"),
        ({"a": 2}, None),
    ]
    assert units[1].detail.startswith("line 2")


def test_pretty_printed_single_object(tmp_path: Path) -> None:
    record = b.camel_chat_record(1)
    path = tmp_path / "001_001_001.json"
    path.write_text(json.dumps(record, indent=4))
    assert records_of(path) == [record]


@pytest.mark.parametrize("content", [b"just some notes\n", b"", b"\x00\x01binary", b"{not json"])
def test_non_json_files_are_one_error_unit(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    units = list(read_units(path))
    assert len(units) == 1
    assert units[0].error == "invalid_json"


def test_unusable_sources_raise_value_error_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'ai_societyy'"):
        resolve_sources(["ai_societyy"])
    with pytest.raises(ValueError, match=r"nowhere\.json"):
        resolve_sources([str(tmp_path / "nowhere.json")])
    names = [s.name for s in resolve_sources(["all", "sharegpt", str(tmp_path)])]
    assert names[:8] == ["ai_society", "code", "math", "physics", "chemistry", "biology",
                         "alpaca", "sharegpt"]  # fmt: skip
    assert len(names) == 9


def test_every_shared_dataset_key_has_its_hub_files() -> None:
    assert tuple(HUB_DATASETS) == DATASET_SOURCE_KEYS


def test_corrupt_parquet_is_one_error_unit(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file PAR1")
    units = list(read_units(path))
    assert [u.error for u in units] == ["unreadable_file"]
