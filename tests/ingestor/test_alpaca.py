"""Alpaca conversion and its parquet reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ingestor.files.readers import read_units
from services.ingestor.formats.alpaca import convert_alpaca
from services.ingestor.formats.records import RecordProblem
from tests.ingestor.builders import alpaca_parquet, alpaca_rows


def test_instruction_and_input_joined_with_one_space() -> None:
    out = convert_alpaca({"instruction": "Add", "input": "2 and 3", "output": "5"}, "a")
    assert out == {
        "id": "a",
        "conversations": [{"from": "human", "value": "Add 2 and 3"}, {"from": "gpt", "value": "5"}],
    }


@pytest.mark.parametrize("empty", ["", None])
def test_empty_input_leaves_no_trailing_space(empty: str | None) -> None:
    out = convert_alpaca({"instruction": "Say hi", "input": empty, "output": "Hi"}, "a")
    assert out["conversations"][0]["value"] == "Say hi"


def test_missing_input_column_counts_as_empty() -> None:
    out = convert_alpaca({"instruction": "Say hi", "output": "Hi"}, "a")
    assert out["conversations"][0]["value"] == "Say hi"


@pytest.mark.parametrize(
    "record",
    [{"instruction": "x"}, {"output": "y"}, {"instruction": None, "output": "y"}, ["x"]],
)
def test_records_without_instruction_or_output_are_missing_fields(record: object) -> None:
    with pytest.raises(RecordProblem) as info:
        convert_alpaca(record, "a")
    assert info.value.reason == "missing_fields"


def test_parquet_rows_stream_with_the_text_column_ignored(tmp_path: Path) -> None:
    rows = alpaca_rows(5)
    path = alpaca_parquet(tmp_path / "train.parquet", rows)
    units = list(read_units(path))
    assert [u.record for u in units] == rows
    out = convert_alpaca(units[1].record, "x")
    assert out["conversations"][0]["value"] == rows[1]["instruction"]  # empty input
    assert "text" not in out
