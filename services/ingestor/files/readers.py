"""Streaming readers: one data file in, raw units out (a parsed record, or an error for the part
of the file that cannot be read). Large JSON lists go through ijson and parquet through pyarrow
batches, so no source is ever held in memory whole."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_BATCH = 1024


class RawUnit(NamedTuple):
    """A record read from ``file``, or ``error`` (a reason) when that part is unreadable."""

    file: str
    record: Any = None
    error: str | None = None
    detail: str | None = None


def _first_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        while chunk := f.read(4096):
            stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
            if stripped:
                return stripped[:1]
    return b""


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"PAR1"


def read_units(path: Path) -> Iterator[RawUnit]:
    """Units of one file: parquet rows, JSON list items, JSON Lines, or one JSON object."""
    name = str(path)
    try:
        if _is_parquet(path):
            yield from _parquet_units(path)
            return
        first = _first_byte(path)
    except OSError as exc:
        yield RawUnit(name, error="unreadable_file", detail=str(exc))
        return
    if first == b"[":
        yield from _json_list_units(path)
    elif first == b"{":
        yield from _json_object_or_lines_units(path)
    else:
        yield RawUnit(name, error="invalid_json", detail="not JSON, JSON Lines or parquet")


def _parquet_units(path: Path) -> Iterator[RawUnit]:
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
            for row in batch.to_pylist():
                yield RawUnit(str(path), row)
    except (pa.ArrowException, OSError) as exc:
        yield RawUnit(str(path), error="unreadable_file", detail=str(exc))


def _json_list_units(path: Path) -> Iterator[RawUnit]:
    try:
        with path.open("rb") as f:
            for item in ijson.items(f, "item", use_float=True):
                yield RawUnit(str(path), item)
    except (ijson.JSONError, ValueError) as exc:  # truncated or malformed from here on
        yield RawUnit(str(path), error="invalid_json", detail=str(exc)[:300])


def _json_object_or_lines_units(path: Path) -> Iterator[RawUnit]:
    with path.open("rb") as f:
        first_line = f.readline()
    try:
        json_lines = isinstance(json.loads(first_line), dict)
    except ValueError:
        json_lines = False
    if not json_lines:  # a (pretty-printed) single object, e.g. one CAMEL conversation
        try:
            yield RawUnit(str(path), json.loads(path.read_bytes()))
        except ValueError as exc:
            yield RawUnit(str(path), error="invalid_json", detail=str(exc)[:300])
        return
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield RawUnit(str(path), json.loads(line))
            except ValueError as exc:
                yield RawUnit(str(path), error="invalid_json", detail=f"line {number}: {exc}")


def peek(units: Iterator[RawUnit], n: int) -> tuple[list[RawUnit], Iterator[RawUnit]]:
    """The first ``n`` units and an iterator that still yields all of them."""
    head = list(itertools.islice(units, n))
    return head, itertools.chain(head, units)
