"""Stage "split": filtered conversations -> token-budgeted samples, appended to one JSON Lines
file whose line offsets are kept so the merge can shuffle without loading the samples.

The unit counted is one conversation (kept when at least one sample comes out of it); rounds
dropped for size and trailing turns are counted beside it. Turns are counted by the pool's
processes, a conversation a task, while this process splits and writes.
"""

from __future__ import annotations

import itertools
import json
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.ingestor.files.writers import jsonl_line
from services.ingestor.rules.splitting import split_conversation, turn_costs
from services.ingestor.rules.tokens import TurnTokenCounter, count_turns
from services.ingestor.stages.counts import StageCounts
from services.ingestor.stages.parallel import OrderedMap, batched

STAGE = "split"
BATCH_CONVERSATIONS = 256


@dataclass
class SplitCounts:
    conversations: StageCounts = field(default_factory=StageCounts)
    rounds: StageCounts = field(default_factory=StageCounts)
    samples: int = 0
    trailing_turns_dropped: int = 0

    def add(self, other: SplitCounts) -> None:
        self.conversations.add(other.conversations)
        self.rounds.add(other.rounds)
        self.samples += other.samples
        self.trailing_turns_dropped += other.trailing_turns_dropped

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.conversations.as_dict(),
            "samples_out": self.samples,
            "rounds": self.rounds.as_dict(),
            "trailing_turns_dropped": self.trailing_turns_dropped,
        }


class SampleStore:
    """Samples on disk, one JSON line each, with each line's byte offset and token length."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self.offsets = array("Q")
        self.lengths = array("I")

    def add(self, sample: dict[str, Any], length: int) -> None:
        self.offsets.append(self._file.tell())
        self.lengths.append(length)
        self._file.write(jsonl_line(sample).encode())

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return len(self.offsets)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for line in f:
            yield json.loads(line)


def _paired_texts(record: dict[str, Any]) -> list[str]:
    turns = record["conversations"]
    return [t["value"] for t in turns[: len(turns) // 2 * 2]]


def _counted(
    records: Iterable[dict[str, Any]], counter: TurnTokenCounter, map_fn: OrderedMap | None
) -> Iterator[tuple[dict[str, Any], list[int]]]:
    """``(record, token count of each paired turn)``: counted in the pool processes of
    ``map_fn`` a conversation at a time, or here a batch at a time."""
    if map_fn is not None:
        ahead, behind = itertools.tee(records)
        tasks = (counter.task(_paired_texts(record)) for record in ahead)
        yield from zip(behind, map_fn(count_turns, tasks), strict=True)
        return
    for batch in batched(records, BATCH_CONVERSATIONS):
        token_counts = iter(counter.count([t for r in batch for t in _paired_texts(r)]))
        for record in batch:
            paired = len(record["conversations"]) // 2 * 2
            yield record, list(itertools.islice(token_counts, paired))


def split_records(
    records: Iterable[dict[str, Any]],
    counter: TurnTokenCounter,
    max_length: int,
    counts: SplitCounts,
    on_progress: Callable[[int], None] | None = None,
    map_fn: OrderedMap | None = None,
) -> Iterator[tuple[dict[str, Any], int]]:
    """``(sample, token cost)`` for every sample of a stream of valid conversations, counted in
    ``counts``. Shared by the pipeline and ``python -m
    services.ingestor.split_long_conversation``."""
    for done, (record, token_counts) in enumerate(_counted(records, counter, map_fn), 1):
        result = split_conversation(record, turn_costs(token_counts), max_length)
        counts.trailing_turns_dropped += int(result.trailing_turn_dropped)
        counts.rounds.keep(result.rounds - result.oversized_rounds)
        counts.rounds.drop("oversized_round", result.oversized_rounds)
        if result.reason:
            counts.conversations.drop(result.reason)
        else:
            counts.conversations.keep()
            for sample, length in zip(result.samples, result.lengths, strict=True):
                counts.samples += 1
                yield sample, length
        if on_progress and done % BATCH_CONVERSATIONS == 0:
            on_progress(counts.conversations.received)
    if on_progress:
        on_progress(counts.conversations.received)


def split_file(
    filtered: Path,
    store: SampleStore,
    counter: TurnTokenCounter,
    max_length: int,
    on_progress: Callable[[int], None] | None = None,
    map_fn: OrderedMap | None = None,
) -> SplitCounts:
    """Split every conversation of a filtered JSON Lines file into ``store``."""
    counts = SplitCounts()
    for sample, length in split_records(
        _read_jsonl(filtered), counter, max_length, counts, on_progress, map_fn
    ):
        store.add(sample, length)
    return counts
