"""A left-padded batch of KV caches that sequences can join and leave between decode steps.

Rows are left-padded to a common length; an attention mask marks real positions and each row
carries its own position ids, so a sequence computes the same attention whatever else is in the
batch (padded keys get zero weight). Works for models whose cache layers hold full ``keys`` and
``values`` tensors of shape [batch, heads, length, head_dim] (LLaMA-style decoder models).
"""

from __future__ import annotations

from typing import Any

import torch


def _pad_left(t: torch.Tensor, n: int) -> torch.Tensor:
    if n == 0:
        return t
    shape = list(t.shape)
    shape[-2] = n
    return torch.cat([t.new_zeros(shape), t], dim=-2)


class KVBatch:
    """The running batch's cache, attention mask and next input per row."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # [rows, length], 1 = real position
        self.positions: list[int] = []  # position id of each row's next input token
        self.next_tokens: list[int] = []

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    @classmethod
    def of(
        cls, cache: Any, mask: torch.Tensor, positions: list[int], next_tokens: list[int]
    ) -> KVBatch:
        """A batch from a (left-padded) prefilled cache, its mask and each row's next input."""
        batch = cls()
        batch.cache, batch.mask = cache, mask
        batch.positions, batch.next_tokens = list(positions), list(next_tokens)
        return batch

    def merge(self, other: KVBatch) -> None:
        """Append ``other``'s rows (one copy of each cache, whatever the number of rows)."""
        if not len(other):
            return
        if self.cache is None:
            self.cache, self.mask = other.cache, other.mask
        else:
            assert self.mask is not None and other.mask is not None
            target = max(self.length, other.length)
            batch_pad, row_pad = target - self.length, target - other.length
            for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
                mine.keys = torch.cat(
                    [_pad_left(mine.keys, batch_pad), _pad_left(theirs.keys, row_pad)]
                )
                mine.values = torch.cat(
                    [_pad_left(mine.values, batch_pad), _pad_left(theirs.values, row_pad)]
                )
            self.mask = torch.cat(
                [
                    torch.nn.functional.pad(self.mask, (batch_pad, 0)),
                    torch.nn.functional.pad(other.mask, (row_pad, 0)),
                ]
            )
        self.positions += other.positions
        self.next_tokens += other.next_tokens

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in this order) and drop padding no row needs any more."""
        if not rows:
            self.__init__()  # type: ignore[misc]
            return
        assert self.mask is not None
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        # Leading columns that are padding in every remaining row can go.
        start = int((mask.sum(dim=0) > 0).nonzero()[0]) if mask.any() else 0
        self.mask = mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]
        self.positions = [self.positions[i] for i in rows]
        self.next_tokens = [self.next_tokens[i] for i in rows]

    def step(self, model: Any) -> torch.Tensor:
        """One decode step for every row; returns the last-position logits [rows, vocab]."""
        assert self.mask is not None
        device = self.mask.device
        input_ids = torch.tensor(self.next_tokens, device=device).unsqueeze(1)
        self.mask = torch.cat(
            [self.mask, torch.ones((len(self), 1), dtype=torch.long, device=device)], dim=1
        )
        position_ids = torch.tensor(self.positions, device=device).unsqueeze(1)
        out = model(
            input_ids=input_ids,
            attention_mask=self.mask,
            position_ids=position_ids,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache = out.cache
        self.positions = [p + 1 for p in self.positions]
        return out.logits[:, -1, :].float()
