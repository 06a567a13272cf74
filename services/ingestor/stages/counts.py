"""Per-stage record accounting: every record that enters a stage is either kept or dropped for a
named reason, so the manifest can prove that nothing vanished silently."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.formats.records import QUARANTINE_REASONS

STAGES = ("download", "convert", "filter", "split", "merge")


@dataclass
class StageCounts:
    """Records in, records kept, records dropped by reason (in == kept + sum(dropped))."""

    received: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def keep(self, n: int = 1) -> None:
        self.received += n
        self.kept += n

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.received += n
            self.dropped[reason] += n

    def add(self, other: StageCounts) -> None:
        self.received += other.received
        self.kept += other.kept
        self.dropped.update(other.dropped)

    def is_balanced(self) -> bool:
        return self.received == self.kept + sum(self.dropped.values())

    def as_dict(self) -> dict:
        return {
            "in": self.received,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
        }


def counts_balance(counts: dict) -> bool:
    """The invariant on a manifest's serialized counts: in == kept + dropped by reason."""
    return counts["in"] == counts["kept"] + sum(counts["dropped"].values())


class Tally:
    """One source's pass through one stage: every record kept or dropped, malformed input set
    aside in ``rejected.jsonl``, and ``on_progress(records so far)`` every ``every`` records and
    once at the end."""

    def __init__(
        self,
        stage: str,
        source: str = "",
        rejected: RejectedLog | None = None,
        on_progress: Callable[[int], None] | None = None,
        every: int = 1000,
    ) -> None:
        self.source = source
        self.stage = stage
        self.counts = StageCounts()
        self._rejected = rejected
        self._on_progress = on_progress
        self._every = every

    def keep(self) -> None:
        self.counts.keep()
        self._tick()

    def drop(
        self, reason: str, record: Any = None, file: str | None = None, detail: str | None = None
    ) -> None:
        """Count a drop; a quarantine reason also writes the record to ``rejected.jsonl``."""
        self.counts.drop(reason)
        if reason in QUARANTINE_REASONS and self._rejected is not None:
            self._rejected.add(self.source, self.stage, reason, record, file, detail)
        self._tick()

    def _tick(self) -> None:
        if self._on_progress and self.counts.received % self._every == 0:
            self._on_progress(self.counts.received)

    def finish(self) -> StageCounts:
        if self._on_progress:
            self._on_progress(self.counts.received)
        return self.counts
