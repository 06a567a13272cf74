"""Multipart bodies of ``POST /v1/datasets``, checked while they stream in.

Each uploaded ``file`` is refused as soon as it shows what it is not: a name without a dataset
suffix (JSON, JSON Lines, parquet, an archive), first bytes that do not fit that suffix, more bytes
than the per-file or per-request limit, more files than allowed. Accepted files are written to a
staging folder beside the dataset folders (``DATASETS_DIR/.upload-<id>``) under temporary names;
``StagedUploads.commit`` renames them into the dataset's ``uploads/`` once every other field of
the request is valid, and ``discard`` removes whatever is left, so a refused request leaves
nothing on disk. Form fields other than ``file`` are read as text; files sent under another name
are ignored, as before.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from services.controller.field_errors import InvalidFields
from shared.datasets import HEAD_BYTES, upload_content_problem, upload_name_problem
from shared.settings import IngestorSettings

UPLOAD_FIELD = "file"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FIELDS = 64
MAX_FIELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_total_bytes: int
    max_files: int

    @classmethod
    def from_settings(cls, settings: IngestorSettings) -> UploadLimits:
        return cls(
            settings.upload_max_file_bytes,
            settings.upload_max_total_bytes,
            settings.upload_max_files,
        )


def _refused(message: str) -> InvalidFields:
    return InvalidFields([(UPLOAD_FIELD, message)])


@dataclass
class StagedFile:
    name: str  # its name in the dataset's uploads folder
    path: Path  # the staged copy, under a temporary name
    out: BinaryIO
    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    checked: bool = False


class StagedUploads:
    """The files of one request: staged beside the dataset folders, then committed into the
    dataset's ``uploads/`` or discarded."""

    def __init__(self, dataset_folder: Path) -> None:
        self.target = dataset_folder / "uploads"
        self.staging = dataset_folder.parent / f".upload-{dataset_folder.name}"
        self.files: list[StagedFile] = []

    def paths(self) -> list[str]:
        """Where the files will be once committed (the dataset's sources)."""
        return [str(self.target / f.name) for f in self.files]

    def add(self, filename: str) -> StagedFile:
        name = _SAFE_NAME.sub("_", Path(filename).name).lstrip(".") or "upload"
        taken = {f.name for f in self.files}
        stem, dot, suffix = name.partition(".")
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{stem}_{n}{dot}{suffix}", n + 1
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / f"{len(self.files)}.part"
        staged = StagedFile(unique, path, path.open("wb"))
        self.files.append(staged)
        return staged

    def commit(self) -> None:
        """Rename every staged file into the dataset's ``uploads/`` (same filesystem)."""
        if not self.files:
            return
        self.target.mkdir(parents=True, exist_ok=True)
        for staged in self.files:
            staged.out.close()
            os.replace(staged.path, self.target / staged.name)

    def discard(self) -> None:
        """Remove the staging folder and what is still in it (nothing else)."""
        for staged in self.files:
            staged.out.close()
        shutil.rmtree(self.staging, ignore_errors=True)


class _FormStream:
    """python-multipart callbacks: fields collected as text, ``file`` parts staged and checked
    while their bytes arrive (exceptions raised here stop the parse at once)."""

    def __init__(self, uploads: StagedUploads, limits: UploadLimits, charset: str) -> None:
        self.uploads, self.limits, self.charset = uploads, limits, charset
        self.fields: dict[str, str] = {}
        self.pending: list[tuple[StagedFile, bytes]] = []
        self.total = 0
        self._reset()

    def _reset(self) -> None:
        self._header_name, self._header_value, self._disposition = b"", b"", b""
        self._name: str | None = None
        self._data = bytearray()
        self._file: StagedFile | None = None
        self._ignored = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._reset,
            "on_header_field": lambda d, s, e: self._add_header(d[s:e], None),
            "on_header_value": lambda d, s, e: self._add_header(None, d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self._part_data(d[s:e]),
            "on_part_end": self._part_end,
        }

    def _add_header(self, name: bytes | None, value: bytes | None) -> None:
        self._header_name += name or b""
        self._header_value += value or b""

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode(self.charset, "replace")
        if b"filename" not in options:
            if len(self.fields) >= MAX_FIELDS:
                raise InvalidFields([("body", f"more than {MAX_FIELDS} form fields")])
            return
        if self._name != UPLOAD_FIELD:
            self._ignored = True
            return
        if len(self.uploads.files) >= self.limits.max_files:
            raise _refused(f"more than {self.limits.max_files} files in one request")
        filename = options[b"filename"].decode(self.charset, "replace")
        if problem := upload_name_problem(filename):
            raise _refused(problem)
        self._file = self.uploads.add(filename)

    def _part_data(self, data: bytes) -> None:
        if self._ignored:
            return
        if self._file is None:
            if len(self._data) + len(data) > MAX_FIELD_BYTES:
                raise InvalidFields([(self._name or "body", "form field too long")])
            self._data += data
            return
        self._count(self._file, len(data))
        if not self._file.checked:
            self._file.head += data[: HEAD_BYTES - len(self._file.head)]
            if len(self._file.head) >= HEAD_BYTES:
                self._check_head(self._file)
        self.pending.append((self._file, data))

    def _count(self, staged: StagedFile, size: int) -> None:
        staged.size += size
        self.total += size
        if staged.size > self.limits.max_file_bytes:
            raise _refused(
                f"{staged.name!r} is larger than {self.limits.max_file_bytes} bytes "
                "(INGEST_UPLOAD_MAX_FILE_BYTES)"
            )
        if self.total > self.limits.max_total_bytes:
            raise _refused(
                f"the uploaded files are larger than {self.limits.max_total_bytes} bytes in all "
                "(INGEST_UPLOAD_MAX_TOTAL_BYTES)"
            )

    def _check_head(self, staged: StagedFile) -> None:
        staged.checked = True
        if problem := upload_content_problem(staged.name, bytes(staged.head)):
            raise _refused(problem)

    def _part_end(self) -> None:
        if self._file is not None:
            if not self._file.checked:
                self._check_head(self._file)
        elif not self._ignored and self._name:
            self.fields[self._name] = self._data.decode(self.charset, "replace")


def _write(pending: list[tuple[StagedFile, bytes]]) -> None:
    for staged, data in pending:
        staged.out.write(data)


async def read_form(
    headers: dict[str, str],
    stream: AsyncIterator[bytes],
    uploads: StagedUploads,
    limits: UploadLimits,
) -> dict[str, str]:
    """The form's text fields; its ``file`` parts staged into ``uploads`` (InvalidFields naming
    ``file`` as soon as one is refused). The caller discards ``uploads`` on any error."""
    _, params = parse_options_header(headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidFields([("body", "multipart body without a boundary")])
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "utf-8"
    form = _FormStream(uploads, limits, charset)
    parser = MultipartParser(boundary, form.callbacks())
    try:
        async for chunk in stream:
            parser.write(chunk)
            if form.pending:
                await run_in_threadpool(_write, form.pending)
                form.pending = []
        parser.finalize()
    except FormParserError:
        raise InvalidFields([("body", "malformed multipart body")]) from None
    return form.fields
