"""Dataset build requests and records: the contract between the controller and the ingestor."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.paths import DATASET_ID_PREFIX, AllowedRoots, RefusedReference, Resolver, UrlPolicy
from shared.paths import system_addresses as _system_addresses

# The original's eight Hub dataset keys, in the order ``all`` stands for (the original's
# download and convert commands process them in this order: the CAMEL sets, Alpaca, ShareGPT).
DATASET_SOURCE_KEYS = (
    "ai_society",
    "code",
    "math",
    "physics",
    "chemistry",
    "biology",
    "alpaca",
    "sharegpt",
)
ALL_SOURCES = "all"


def expand_sources(sources: list[str]) -> list[str]:
    """``all`` replaced by every key of DATASET_SOURCE_KEYS, in that order; a source named twice
    is kept once, where it first appears."""
    expanded: list[str] = []
    for source in sources:
        for item in DATASET_SOURCE_KEYS if source == ALL_SOURCES else (source,):
            if item not in expanded:
                expanded.append(item)
    return expanded


DatasetStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
DATASET_KIND = "dataset"


class DatasetSpec(BaseModel):
    """What to build: sources (Hub keys, local paths or URLs) and the token budget."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1)
    # Folder or Hub id of the tokenizer whose token counts define the budget; empty: the
    # embedded default model's tokenizer.
    tokenizer: str = ""
    max_length: int = Field(2048, ge=16, le=1_048_576)
    keep_lang: str = Field("en", min_length=2)
    skip_lang: str | None = None
    reduce_rep: bool = False
    seed: int = Field(0, ge=0)

    @field_validator("sources")
    @classmethod
    def _expand_all(cls, sources: list[str]) -> list[str]:
        stripped = [source.strip() for source in sources]
        if not all(stripped):
            raise ValueError("sources must not be empty strings")
        return expand_sources(stripped)


class StageProgress(BaseModel):
    done: int = 0
    total: int | None = None


class DatasetRecord(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    created_at: int
    status: DatasetStatus = "queued"
    spec: DatasetSpec
    path: str
    progress: dict[str, StageProgress] = Field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started_at: int | None = None
    finished_at: int | None = None
    cancel_requested: bool = False


def new_dataset_id() -> str:
    return f"{DATASET_ID_PREFIX}{uuid.uuid4().hex[:16]}"


def is_url(source: str) -> bool:
    """Meant as a URL (then only http and https are fetched), not as a path."""
    return "://" in source or source.lower().startswith(("http:", "https:"))


def checked_source(
    source: str,
    roots: AllowedRoots,
    urls: UrlPolicy,
    resolve: Resolver = _system_addresses,
    *,
    unresolved_ok: bool = False,
) -> str:
    """A source as the ingestor reads it: a Hub key, a URL the policy allows, or the resolved
    path of a file or folder under the roots; RefusedReference otherwise (the same message
    for a missing path and one outside the roots)."""
    if source in DATASET_SOURCE_KEYS:
        return source
    if is_url(source):
        urls.check(source, resolve, unresolved_ok=unresolved_ok)
        return source
    found = roots.inside(source)
    if found is None or not found.exists():
        known = ", ".join(DATASET_SOURCE_KEYS)
        raise RefusedReference(
            f"{source!r} is neither a known dataset ({known}, {ALL_SOURCES}), an http(s) URL, "
            f"nor a file or folder under an allowed folder ({roots.names()})"
        )
    return str(found)


# What an upload may be: the files the ingestor reads (JSON, JSON Lines, parquet) and the
# archives it extracts, each recognised by its name and its first bytes.
DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
UPLOAD_SUFFIXES = DATA_SUFFIXES + ARCHIVE_SUFFIXES
# Bytes of a file's start that tell its format (a tar header's "ustar" ends at byte 262).
HEAD_BYTES = 512
_MAGIC_BY_SUFFIX = {
    ".parquet": (b"PAR1",),
    ".tar.gz": (b"\x1f\x8b",),
    ".tgz": (b"\x1f\x8b",),
    ".tar.bz2": (b"BZh",),
    ".tar.xz": (b"\xfd7zXZ\x00",),
    ".zip": (b"PK\x03\x04", b"PK\x05\x06"),
}
ARCHIVE_MAGIC = (b"\x1f\x8b", b"PK\x03\x04", b"PK\x05\x06", b"BZh", b"\xfd7zXZ\x00")


def is_tar_header(head: bytes) -> bool:
    return head[257:262] == b"ustar"


def upload_name_problem(name: str) -> str | None:
    """What is wrong with an uploaded file's name (its suffix), or None."""
    if name.lower().endswith(UPLOAD_SUFFIXES):
        return None
    return f"{name!r} is not a dataset file (its name must end in {', '.join(UPLOAD_SUFFIXES)})"


def upload_content_problem(name: str, head: bytes) -> str | None:
    """Whether the first bytes of an upload fit its name: JSON starts with ``{`` or ``[``,
    parquet and archives with their magic numbers. None when they do."""
    lower = name.lower()
    if not head:
        return f"{name!r} is empty"
    if lower.endswith((".json", ".jsonl")):
        fits = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")
    elif lower.endswith(".tar"):
        fits = is_tar_header(head)
    else:
        suffix = next(s for s in _MAGIC_BY_SUFFIX if lower.endswith(s))
        fits = head.startswith(_MAGIC_BY_SUFFIX[suffix])
    return None if fits else f"{name!r} does not look like a {_format_of(lower)} file"


def _format_of(lower: str) -> str:
    if lower.endswith((".json", ".jsonl")):
        return "JSON or JSON Lines"
    return "parquet" if lower.endswith(".parquet") else "archive"


def new_dataset_record(dataset_id: str, spec: DatasetSpec, path: str) -> DatasetRecord:
    return DatasetRecord(id=dataset_id, created_at=int(time.time()), spec=spec, path=path)
