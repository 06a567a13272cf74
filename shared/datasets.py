"""Dataset build requests and records: the contract between the controller and the ingestor."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    return f"ds-{uuid.uuid4().hex[:16]}"


def new_dataset_record(dataset_id: str, spec: DatasetSpec, path: str) -> DatasetRecord:
    return DatasetRecord(id=dataset_id, created_at=int(time.time()), spec=spec, path=path)
