"""What the original's three single-file data commands share (``clean_sharegpt``,
``optional_clean``, ``split_long_conversation``): ``--in-file``/``--out-file``, the ``--begin``/
``--end`` slice, reading the input as a stream, and writing the output under a temporary name that
is renamed only once the whole list is written, so a failed run leaves nothing half-written."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.ingestor.files.readers import RawUnit, read_units
from services.ingestor.files.writers import JsonListWriter


class DataInputError(Exception):
    """Input the command cannot use: a missing file, unreadable JSON, a slice past the end."""


def non_negative_int(text: str) -> int:
    """argparse type: ``--begin 1.5`` or ``--begin -1`` is a usage error naming the flag."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def add_file_flags(parser: argparse.ArgumentParser, default_out: str | None) -> None:
    """``--in-file`` (required) and ``--out-file``, under both spellings."""
    parser.add_argument("--in-file", "--in_file", dest="in_file", type=Path, required=True)
    parser.add_argument(
        "--out-file",
        "--out_file",
        dest="out_file",
        type=Path,
        default=default_out,
        help=f"default: {default_out}" if default_out else "default: derived from the options",
    )


def add_slice_flags(parser: argparse.ArgumentParser) -> None:
    """``--begin``/``--end``: the records ``[begin, end)`` of the input list, as in the original."""
    parser.add_argument("--begin", type=non_negative_int, default=None, help="first record (0)")
    parser.add_argument("--end", type=non_negative_int, default=None, help="end of the slice")


def check_slice(begin: int | None, end: int | None) -> None:
    if begin is not None and end is not None and end < begin:
        raise DataInputError(f"--end {end} is before --begin {begin}")


def check_in_file(path: Path) -> None:
    if not path.exists():
        raise DataInputError(f"--in-file {path} does not exist")
    if not path.is_file():
        raise DataInputError(f"--in-file {path} is not a file")


class SlicedRecords:
    """The records ``[begin, end)`` of a JSON list / JSON Lines / parquet file, read one at a time.

    Unreadable input stops the command (``DataInputError`` naming the file and the problem) rather
    than being skipped, and so does a ``begin`` past the last record, once the file is read.
    """

    def __init__(self, path: Path, begin: int | None = None, end: int | None = None) -> None:
        self.path = path
        self.begin = begin or 0
        self.end = end
        self.seen = 0  # records read so far, including those before ``begin``

    def units(self) -> Iterator[RawUnit]:
        for unit in read_units(self.path):
            if self.end is not None and self.seen >= self.end:
                return
            if unit.error:
                where = f" ({unit.detail})" if unit.detail else ""
                raise DataInputError(f"--in-file {self.path}: {unit.error}{where}")
            self.seen += 1
            if self.seen > self.begin:
                yield unit
        if self.begin and self.seen <= self.begin:
            raise DataInputError(
                f"--begin {self.begin} is past the end of {self.path} ({self.seen} records)"
            )

    def __iter__(self) -> Iterator[Any]:
        return (unit.record for unit in self.units())


def partial_path(out_file: Path) -> Path:
    return out_file.with_name(f".{out_file.name}.partial-{os.getpid()}")


@contextmanager
def atomic_json_list(out_file: Path) -> Iterator[JsonListWriter]:
    """A ``JsonListWriter`` on a hidden temporary sibling, renamed to ``out_file`` on success
    and removed on any error."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    staging = partial_path(out_file)
    writer = JsonListWriter(staging)
    try:
        yield writer
    except BaseException:
        writer.close()
        staging.unlink(missing_ok=True)
        raise
    writer.close()
    staging.replace(out_file)
