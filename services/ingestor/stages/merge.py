"""Stage "merge": shuffle the split samples with a recorded seed and write ``dataset.jsonl``
(the training input; its sha256 is the content hash) and ``dataset.json`` (indent 2, the
original's file). Only line offsets are shuffled in memory; samples are read back from disk."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.ingestor.files.writers import JsonListWriter
from services.ingestor.stages.counts import StageCounts, Tally
from services.ingestor.stages.split import SampleStore

STAGE = "merge"
PROGRESS_EVERY = 5000


@dataclass
class MergeResult:
    counts: StageCounts
    sha256: str
    jsonl_path: Path
    json_path: Path


def shuffled_order(n: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def write_dataset(
    store: SampleStore,
    jsonl_path: Path,
    json_path: Path,
    seed: int,
    on_progress: Callable[[int], None] | None = None,
) -> MergeResult:
    tally = Tally(STAGE, on_progress=on_progress, every=PROGRESS_EVERY)
    digest = hashlib.sha256()
    with (
        store.path.open("rb") as samples,
        jsonl_path.open("wb") as jsonl,
        JsonListWriter(json_path) as json_list,
    ):
        for index in shuffled_order(len(store), seed):
            samples.seek(store.offsets[index])
            line = samples.readline()
            jsonl.write(line)
            digest.update(line)
            json_list.write_line(line.decode())
            tally.keep()
    counts = tally.finish()
    return MergeResult(counts, digest.hexdigest(), jsonl_path, json_path)


def length_histogram(ordered: list[int]) -> list[dict[str, int]]:
    """Counts per power-of-two bucket: ``{"le": upper bound, "count": samples}``, from 16 up."""
    buckets: list[dict[str, int]] = []
    upper, i = 16, 0
    while i < len(ordered):
        start = i
        while i < len(ordered) and ordered[i] <= upper:
            i += 1
        buckets.append({"le": upper, "count": i - start})
        upper *= 2
    return buckets


def length_stats(lengths: list[int] | tuple[int, ...]) -> dict[str, Any]:
    """min/median/p95/max of sample token lengths (nearest-rank percentiles) and a histogram."""
    if not lengths:
        return {
            "count": 0,
            "min": None,
            "median": None,
            "p95": None,
            "max": None,
            "mean": None,
            "histogram": [],
        }
    ordered = sorted(lengths)
    n = len(ordered)

    def rank(q: float) -> int:
        return ordered[max(0, math.ceil(q * n) - 1)]

    return {
        "count": n,
        "min": ordered[0],
        "median": rank(0.5),
        "p95": rank(0.95),
        "max": ordered[-1],
        "mean": round(sum(ordered) / n, 1),
        "histogram": length_histogram(ordered),
    }
