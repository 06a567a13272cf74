"""Packing: several samples per row of ``max_length`` tokens, each attending only to itself.

Padding every sample to ``max_length`` (the original) spends most compute on padding for chat
data (CAMEL samples are mostly a few hundred tokens). Instead samples are packed into rows by
best-fit decreasing, and each row carries ``position_ids`` that restart at 0 for every sample.

Attention stays inside each sample without a custom kernel: with ``attention_mask=None`` and
packed ``position_ids``, transformers (``masking_utils.find_packed_sequence_indices``) builds a
block-diagonal causal mask for SDPA and eager attention, and flash-attention 2 runs varlen on a
flattened batch. A row shorter than the longest of its batch is filled with a padding segment
whose positions also restart at 0, so it is a "sample" of its own that nothing attends to and
that carries no loss. ``tests/trainer/test_packing.py`` proves the summed loss of a packed row
equals the sum of the per-sample losses.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from services.trainer.masking import IGNORE_INDEX, MaskedSample


def pack_best_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins of total length <= capacity (best-fit decreasing).

    Deterministic for the same lengths, which resuming relies on. Longer items than capacity
    must be truncated before (masking does).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin number), sorted
    for index in order:
        length = lengths[index]
        if length > capacity:
            raise ValueError(f"item {index} has {length} tokens, more than {capacity}")
        slot = bisect_left(free, (length, -1))
        if slot < len(free):
            room, number = free.pop(slot)
            bins[number].append(index)
            insort(free, (room - length, number))
        else:
            bins.append([index])
            insort(free, (capacity - length, len(bins) - 1))
    return bins


class PackedRows(Dataset):
    """Rows of packed samples: concatenated ids and labels, positions restarting per sample."""

    def __init__(
        self,
        samples: Sequence[MaskedSample],
        capacity: int,
        lengths: Sequence[int] | None = None,
    ) -> None:
        """``lengths``: each sample's token count, when reading the samples would cost (lazy)."""
        self.samples = samples
        self.capacity = capacity
        self.lengths = lengths if lengths is not None else [len(s.input_ids) for s in samples]
        self.rows = pack_best_fit(self.lengths, capacity)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for sample in (self.samples[i] for i in self.rows[index]):
            ids.extend(sample.input_ids)
            # The first token of a sample is never predicted from the previous sample.
            labels.append(IGNORE_INDEX)
            labels.extend(sample.labels[1:])
            positions.extend(range(len(sample.input_ids)))
        return {"input_ids": ids, "labels": labels, "position_ids": positions}

    @property
    def fill(self) -> float:
        """Share of the rows' capacity holding real tokens."""
        tokens = sum(self.lengths)
        return tokens / max(1, len(self.rows) * self.capacity)


class SingleSamples(Dataset):
    """One sample per row, for padded batches (packing off, and the benchmark's baseline)."""

    def __init__(self, samples: Sequence[MaskedSample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        sample = self.samples[index]
        return {"input_ids": sample.input_ids, "labels": sample.labels}


@dataclass
class PackedCollator:
    """Packed rows → ``input_ids``, ``labels``, ``position_ids``, and no attention mask.

    Rows shorter than the batch's longest get a padding segment whose positions restart at 0.
    ``flatten``: put the whole batch in one row instead (flash-attention varlen: no padding).
    ``real_tokens`` counts non-padding tokens; the trainer pops it before the forward pass.
    """

    pad_token_id: int
    flatten: bool = False

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        if self.flatten:
            rows = [{key: [v for row in rows for v in row[key]] for key in rows[0]}]
        width = max(len(row["input_ids"]) for row in rows)
        input_ids, labels, positions = [], [], []
        for row in rows:
            pad = width - len(row["input_ids"])
            input_ids.append(row["input_ids"] + [self.pad_token_id] * pad)
            labels.append(row["labels"] + [IGNORE_INDEX] * pad)
            positions.append(row["position_ids"] + list(range(pad)))
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "position_ids": torch.tensor(positions, dtype=torch.long),
            "real_tokens": torch.tensor(sum(len(row["input_ids"]) for row in rows)),
        }


@dataclass
class PaddedCollator:
    """One sample per row, right-padded, with an attention mask.

    ``pad_to``: pad every row to this length (the original's ``padding="max_length"``, kept for
    the benchmark's baseline); None pads to the longest sample of the batch.
    """

    pad_token_id: int
    pad_to: int | None = None

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = self.pad_to or max(len(row["input_ids"]) for row in rows)
        input_ids, labels, attention = [], [], []
        for row in rows:
            pad = width - len(row["input_ids"])
            input_ids.append(row["input_ids"] + [self.pad_token_id] * pad)
            labels.append(row["labels"] + [IGNORE_INDEX] * pad)
            attention.append([1] * len(row["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(attention, dtype=torch.long),
            "real_tokens": torch.tensor(sum(len(row["input_ids"]) for row in rows)),
        }
