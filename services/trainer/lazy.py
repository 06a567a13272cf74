"""Lazy tokenization (the original's ``--lazy_preprocess`` / ``LazySupervisedDataset``): a
conversation is rendered, tokenized and masked when training reads it, not up front.

What stays in memory is 16 bytes per conversation: its byte offset in the data file, its token
length (which packing needs before the first step) and its count of trained tokens. The lengths
come from one streaming pass that masks each conversation once and keeps only those numbers, so
lost samples are counted exactly as in eager mode. Nothing is cached per sample (the original
kept every tokenized sample once read, which grows back to the eager footprint over an epoch);
re-tokenizing a sample costs far less than the training step that reads it.

A JSON list input is first copied, streaming, to an unnamed temporary JSON Lines file (deleted
by the OS when the run ends); a JSON Lines input is read in place.
"""

from __future__ import annotations

import json
import tempfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import ijson

from services.trainer.errors import TrainingError
from services.trainer.masking import MaskedSample


class RecordFile:
    """A conversation file as JSON Lines with the byte offset of every record."""

    def __init__(self, path: str | Path, scratch_dir: Path | None) -> None:
        self.path = Path(path)
        try:
            self._file, self.offsets = self._open_indexed(scratch_dir)
        except OSError as exc:
            raise TrainingError(f"cannot read dataset file {self.path}: {exc}") from exc
        except (ijson.JSONError, ValueError) as exc:
            raise TrainingError(f"dataset file {self.path} is not a JSON list: {exc}") from exc
        if not self.offsets:
            raise TrainingError(f"dataset file {self.path} holds no conversations")

    def _open_indexed(self, scratch_dir: Path | None) -> tuple[IO[bytes], array]:
        source = self.path.open("rb")
        if _first_byte(source) != b"[":
            return source, _line_offsets(source)
        if scratch_dir is not None:
            scratch_dir.mkdir(parents=True, exist_ok=True)
        lines = tempfile.TemporaryFile(dir=scratch_dir)  # noqa: SIM115 - lives with the dataset
        with source:
            for item in ijson.items(source, "item", use_float=True):
                lines.write(json.dumps(item, ensure_ascii=False).encode() + b"\n")
        return lines, _line_offsets(lines)

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, index: int) -> Any:
        self._file.seek(self.offsets[index])
        line = self._file.readline()
        try:
            return json.loads(line)
        except ValueError as exc:
            raise TrainingError(f"{self.path}, record {index}: not JSON: {exc}") from exc

    def records(self, chunk: int) -> Iterator[list[Any]]:
        """All records in file order, ``chunk`` at a time."""
        for begin in range(0, len(self.offsets), chunk):
            yield [self.read(i) for i in range(begin, min(begin + chunk, len(self.offsets)))]


def _first_byte(f: IO[bytes]) -> bytes:
    while chunk := f.read(4096):
        stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
        if stripped:
            f.seek(0)
            return stripped[:1]
    f.seek(0)
    return b""


def _line_offsets(f: IO[bytes]) -> array:
    offsets = array("Q")
    f.seek(0)
    position = 0
    for line in f:
        if line.strip():
            offsets.append(position)
        position += len(line)
    return offsets


class LazySamples(Sequence[MaskedSample]):
    """The selected records of a ``RecordFile``, each masked when it is read."""

    def __init__(
        self,
        records: RecordFile,
        indices: Sequence[int],
        lengths: Sequence[int],
        encode: Callable[[Any], MaskedSample],
    ) -> None:
        self.records = records
        self.indices = array("Q", indices)
        self.lengths = array("I", lengths)  # token length of each selected record
        self._encode = encode

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> MaskedSample:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("LazySamples takes an index, not a slice")
        sample = self._encode(self.records.read(self.indices[index]))
        if len(sample.input_ids) != self.lengths[index]:
            raise TrainingError(
                f"{self.records.path} changed during training (record {self.indices[index]})"
            )
        return sample
