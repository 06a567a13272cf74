"""What a source string names: a Hub dataset key, a local file or folder, or an http(s) URL.
Resolution fails early, naming the source, so a caller can answer 400.

The keys and what ``all`` stands for are the contract in ``shared/datasets.py``; the Hub files
behind each key are the original's: one archive per CAMEL set, two JSON parts for ShareGPT, one
parquet file for Alpaca.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from services.ingestor.formats import ALPACA, CAMEL_CHAT, CAMEL_SCIENCE, SHAREGPT
from shared.datasets import ALL_SOURCES, DATASET_SOURCE_KEYS, expand_sources


@dataclass(frozen=True)
class HubDataset:
    key: str
    repo_id: str
    filenames: tuple[str, ...]
    format: str


_SCIENCE = ("math", "physics", "chemistry", "biology")
# The Hub files of each key of DATASET_SOURCE_KEYS, in the same order.
HUB_DATASETS: dict[str, HubDataset] = {
    "ai_society": HubDataset(
        "ai_society", "camel-ai/ai_society", ("ai_society_chat.tar.gz",), CAMEL_CHAT
    ),
    "code": HubDataset("code", "camel-ai/code", ("code_chat.tar.gz",), CAMEL_CHAT),
    **{k: HubDataset(k, f"camel-ai/{k}", (f"{k}.zip",), CAMEL_SCIENCE) for k in _SCIENCE},
    "alpaca": HubDataset(
        "alpaca",
        "tatsu-lab/alpaca",
        ("data/train-00000-of-00001-a09b74b3ef9c3b56.parquet",),
        ALPACA,
    ),
    "sharegpt": HubDataset(
        "sharegpt",
        "anon8231489123/ShareGPT_Vicuna_unfiltered",
        (
            "HTML_cleaned_raw_dataset/sg_90k_part1.json",
            "HTML_cleaned_raw_dataset/sg_90k_part2.json",
        ),
        SHAREGPT,
    ),
}


@dataclass(frozen=True)
class Source:
    """One requested source; ``name`` labels its files and its lines in the manifest."""

    name: str
    kind: Literal["hub", "local", "url"]
    location: str
    format: str | None = None  # forced for Hub keys, detected from content otherwise

    @property
    def hub(self) -> HubDataset:
        return HUB_DATASETS[self.location]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "source"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def resolve_sources(specs: list[str]) -> list[Source]:
    """Turn source strings into Sources; raises ValueError naming the first unusable one."""
    if not specs:
        raise ValueError("no source given: name dataset keys, local paths or http(s) URLs")
    taken: set[str] = set()
    out: list[Source] = []
    for spec in expand_sources(specs):
        if spec in HUB_DATASETS:
            name = _unique(spec, taken)
            out.append(Source(name, "hub", spec, HUB_DATASETS[spec].format))
        elif urlparse(spec).scheme in ("http", "https"):
            url_path = Path(urlparse(spec).path)
            name = _unique(_slug(url_path.name.split(".")[0] or urlparse(spec).netloc), taken)
            out.append(Source(name, "url", spec))
        elif Path(spec).expanduser().exists():
            path = Path(spec).expanduser().resolve()
            out.append(Source(_unique(_slug(path.name.split(".")[0]), taken), "local", str(path)))
        else:
            raise ValueError(
                f"unknown source {spec!r}: not a dataset key "
                f"({', '.join(DATASET_SOURCE_KEYS)}, {ALL_SOURCES}), "
                "an existing local path, or an http(s) URL"
            )
    return out
