"""What a source string names: a Hub dataset key (spec §1.2), a local file or folder, or an
http(s) URL. Resolution fails early, naming the source, so a caller can answer 400."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

SOURCE_KEYS = (
    "ai_society",
    "code",
    "math",
    "physics",
    "chemistry",
    "biology",
    "sharegpt",
    "alpaca",
)
ALL = "all"

# Record formats a converter exists for.
CAMEL_CHAT = "camel_chat"
CAMEL_SCIENCE = "camel_science"
SHAREGPT = "sharegpt"
ALPACA = "alpaca"
CONVERSATION = "conversation"
FORMATS = (CAMEL_CHAT, CAMEL_SCIENCE, SHAREGPT, ALPACA, CONVERSATION)


@dataclass(frozen=True)
class HubDataset:
    key: str
    repo_id: str
    filenames: tuple[str, ...]
    format: str


_SCIENCE = ("math", "physics", "chemistry", "biology")
HUB_DATASETS: dict[str, HubDataset] = {
    "ai_society": HubDataset(
        "ai_society", "camel-ai/ai_society", ("ai_society_chat.tar.gz",), CAMEL_CHAT
    ),
    "code": HubDataset("code", "camel-ai/code", ("code_chat.tar.gz",), CAMEL_CHAT),
    **{k: HubDataset(k, f"camel-ai/{k}", (f"{k}.zip",), CAMEL_SCIENCE) for k in _SCIENCE},
    "sharegpt": HubDataset(
        "sharegpt",
        "anon8231489123/ShareGPT_Vicuna_unfiltered",
        (
            "HTML_cleaned_raw_dataset/sg_90k_part1.json",
            "HTML_cleaned_raw_dataset/sg_90k_part2.json",
        ),
        SHAREGPT,
    ),
    "alpaca": HubDataset(
        "alpaca",
        "tatsu-lab/alpaca",
        ("data/train-00000-of-00001-a09b74b3ef9c3b56.parquet",),
        ALPACA,
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


def expand_keys(names: list[str]) -> list[str]:
    """``all`` stands for every Hub key, in SOURCE_KEYS order; duplicates are removed."""
    out: list[str] = []
    for name in names:
        for item in SOURCE_KEYS if name == ALL else (name,):
            if item not in out:
                out.append(item)
    return out


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
    for spec in expand_keys(specs):
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
                f"unknown source {spec!r}: not a dataset key ({', '.join(SOURCE_KEYS)}, all), "
                "an existing local path, or an http(s) URL"
            )
    return out
