"""Streaming JSON writers: a list written with ``indent=2`` (the original's file layout) without
holding the list in memory, and JSON Lines.

The indented form comes from orjson, whose ``OPT_INDENT_2`` text is ``json.dumps(indent=2,
ensure_ascii=False)``'s (tests/ingestor/test_writers.py) at about 15x the speed: with an indent
the standard library encodes in Python. orjson refuses lone surrogates and integers beyond 64
bits; those records take ``json.dumps``. A float may come out in its shortest spelling (``1e-7``
where ``json`` writes ``1e-07``), the same number."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import orjson


class JsonListWriter:
    """Writes ``[rec, rec, ...]`` byte-identical to ``json.dump(list, f, indent=2)``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("w", encoding="utf-8")
        self.count = 0

    def write(self, record: Any) -> None:
        self.write_item(list_item_json(record))

    def write_item(self, item_json: str) -> None:
        """Append a record already serialized by ``list_item_json`` (e.g. in a worker)."""
        self._file.write(("[\n  " if self.count == 0 else ",\n  ") + item_json)
        self.count += 1

    def write_line(self, compact_json: str) -> None:
        """Append a record given as one compact JSON line (avoids a decode/encode round)."""
        self.write(json.loads(compact_json))  # orjson would read a huge integer as a float

    def close(self) -> None:
        self._file.write("[]" if self.count == 0 else "\n]")
        self._file.close()

    def __enter__(self) -> JsonListWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.close()


def indented_json(record: Any) -> str:
    """``json.dumps(record, indent=2, ensure_ascii=False)``, by orjson where it can."""
    try:
        return orjson.dumps(record, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return json.dumps(record, indent=2, ensure_ascii=False)


def list_item_json(record: Any) -> str:
    """A record as it appears inside an ``indent=2`` list (JSON strings hold no raw newline)."""
    return indented_json(record).replace("\n", "\n  ")


def jsonl_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def scratch_line(record: Any) -> bytes:
    """A record as a compact JSON line for files only this service reads back (orjson, with
    ``json`` for what orjson refuses); not the dataset's own spelling."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return jsonl_line(record).encode("utf-8", "surrogatepass")
