"""Splitting long conversations into samples that fit the token budget, with the original's
defects fixed.

Rules:
- A turn costs its token count (the target tokenizer, with its own special tokens) plus
  ``TURN_ALLOWANCE`` = 6 for the role prefix and separators, as in the original.
- A trailing unpaired turn is dropped; the rest is packed greedily in (human, gpt) rounds. A
  round fits when the running total stays <= max_length (exactly at the budget fits).
- The last chunk is always emitted.
- A single round costing more than max_length is dropped (counted ``oversized_round``), never
  truncated: a cut answer would teach the model to stop mid-sentence. The conversation is split
  around it: rounds before and after become separate samples.
- Every sample is non-empty and alternates human/gpt starting with human; its id is
  ``<id>_<index of its first turn in the original conversation>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.ingestor.formats.records import GPT, HUMAN

TURN_ALLOWANCE = 6


@dataclass
class SplitResult:
    samples: list[dict[str, Any]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # budget cost of each sample
    reason: str | None = None  # why no sample came out
    rounds: int = 0
    oversized_rounds: int = 0
    trailing_turn_dropped: bool = False


def turn_costs(token_counts: list[int]) -> list[int]:
    return [n + TURN_ALLOWANCE for n in token_counts]


def split_conversation(record: dict[str, Any], costs: list[int], max_length: int) -> SplitResult:
    """Pack ``record``'s rounds into samples of total cost <= ``max_length``.

    ``costs[i]`` is the cost of turn i (see ``turn_costs``); only the even prefix is used.
    """
    turns = record["conversations"]
    result = SplitResult(trailing_turn_dropped=len(turns) % 2 == 1)
    end = len(turns) - len(turns) % 2
    if end == 0:
        result.reason = "no_complete_round"
        return result
    if any((turns[i]["from"], turns[i + 1]["from"]) != (HUMAN, GPT) for i in range(0, end, 2)):
        result.reason = "invalid_roles"
        return result
    result.rounds = end // 2

    chunks: list[tuple[int, int, int]] = []  # (start, end, cost)
    start: int | None = None
    used = 0
    for i in range(0, end, 2):
        cost = costs[i] + costs[i + 1]
        if cost > max_length:
            result.oversized_rounds += 1
            if start is not None:
                chunks.append((start, i, used))
            start, used = None, 0
            continue
        if start is not None and used + cost > max_length:
            chunks.append((start, i, used))
            start, used = None, 0
        if start is None:
            start = i
        used += cost
    if start is not None:
        chunks.append((start, end, used))

    for first, stop, cost in chunks:
        result.samples.append({"id": f"{record['id']}_{first}", "conversations": turns[first:stop]})
        result.lengths.append(cost)
    if not result.samples:
        result.reason = "all_rounds_oversized"
    return result
