"""Stage "split": filtered conversations -> token-budgeted samples, appended to one JSON Lines
file whose line offsets are kept so the merge can shuffle without loading the samples.

The unit counted is one conversation (kept when at least one sample comes out of it); rounds
dropped for size and trailing turns are counted beside it. Turns are counted by the pool's
processes, a conversation a task (read from its JSON line, counted, split and written back as
JSON lines there), while this process only stores the lines.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from services.ingestor.files.writers import jsonl_line
from services.ingestor.rules.splitting import split_conversation, turn_costs
from services.ingestor.rules.tokens import TurnTokenCounter, counter_for
from services.ingestor.stages.counts import StageCounts
from services.ingestor.stages.parallel import OrderedMap

STAGE = "split"
PROGRESS_EVERY = 256  # conversations


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
        self._end = 0  # bytes written (tell() would flush the buffer)
        self.offsets = array("Q")
        self.lengths = array("I")

    def add(self, line: bytes, length: int) -> None:
        """Append one sample given as a JSON line (``jsonl_line``, encoded)."""
        self.offsets.append(self._end)
        self.lengths.append(length)
        self._end += self._file.write(line)

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return len(self.offsets)


class SplitTask(NamedTuple):
    tokenizer: tuple[str, bool]  # TurnTokenCounter's (path, plain)
    max_length: int
    record: dict[str, Any] | bytes  # a conversation, or its JSON line


class SplitOutcome(NamedTuple):
    lines: list[bytes]  # the samples, as JSON lines
    lengths: list[int]
    reason: str | None
    rounds: int
    oversized_rounds: int
    trailing_turn_dropped: bool


def split_task(task: SplitTask) -> SplitOutcome:
    """One conversation counted, split and serialized: a task for a pool process."""
    record = json.loads(task.record) if isinstance(task.record, bytes) else task.record
    turns = record["conversations"]
    texts = [t["value"] for t in turns[: len(turns) // 2 * 2]]
    token_counts = counter_for(*task.tokenizer).count(texts)
    result = split_conversation(record, turn_costs(token_counts), task.max_length)
    lines = [jsonl_line(sample).encode() for sample in result.samples]
    return SplitOutcome(
        lines,
        result.lengths,
        result.reason,
        result.rounds,
        result.oversized_rounds,
        result.trailing_turn_dropped,
    )


def split_records(
    records: Iterable[dict[str, Any] | bytes],
    counter: TurnTokenCounter,
    max_length: int,
    counts: SplitCounts,
    on_progress: Callable[[int], None] | None = None,
    map_fn: OrderedMap | None = None,
) -> Iterator[tuple[bytes, int]]:
    """``(sample as a JSON line, token cost)`` for every sample of a stream of valid
    conversations (records or their JSON lines), counted in ``counts``; the work runs in the
    pool processes of ``map_fn`` (here without one). Shared by the pipeline and ``python -m
    services.ingestor.split_long_conversation``."""
    tasks = (SplitTask((counter.path, counter.plain), max_length, r) for r in records)
    outcomes = (map_fn or map)(split_task, tasks)
    for done, outcome in enumerate(outcomes, 1):
        counts.trailing_turns_dropped += int(outcome.trailing_turn_dropped)
        counts.rounds.keep(outcome.rounds - outcome.oversized_rounds)
        counts.rounds.drop("oversized_round", outcome.oversized_rounds)
        if outcome.reason:
            counts.conversations.drop(outcome.reason)
        else:
            counts.conversations.keep()
            counts.samples += len(outcome.lines)
            yield from zip(outcome.lines, outcome.lengths, strict=True)
        if on_progress and done % PROGRESS_EVERY == 0:
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
    with filtered.open("rb") as lines:
        for line, length in split_records(lines, counter, max_length, counts, on_progress, map_fn):
            store.add(line, length)
    return counts
