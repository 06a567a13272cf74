"""Per-stage record accounting: every record that enters a stage is either kept or dropped for a
named reason, so the manifest can prove that nothing vanished silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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


def stage_table() -> dict[str, StageCounts]:
    return {stage: StageCounts() for stage in STAGES}


def counts_balance(counts: dict) -> bool:
    """The invariant on a manifest's serialized counts: in == kept + dropped by reason."""
    return counts["in"] == counts["kept"] + sum(counts["dropped"].values())
