"""The running batch's model state, behind one interface with two implementations.

The scheduler (``batching.py``) decides who prefills, who decodes and who leaves; a ``Rows``
object holds the keys/values and runs the model:

- ``LeanRows``: LLaMA-style models, through ``lean_llama`` (a static per-row KV cache written in
  place, fused projections). The fast path, chosen when ``lean_llama.supports`` the model.
- ``TransformersRows``: any causal LM, through transformers' own forward and cache (a
  left-padded ``KVBatch``). The general fallback.

Each exposes ``forward``, the one callable that runs the model, so tests can slow it down, count
its passes or make it fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from services.model_worker import lean_llama
from services.model_worker.kv_batch import KVBatch
from services.model_worker.prefix_cache import MIN_SHARED_TOKENS, PrefixCache, shared_length


@dataclass
class Prefill:
    """Prompts being prefilled: a group whose padded prompts fit in one chunk, or one prompt
    prefilled a chunk at a time. ``state`` is the implementation's cache so far."""

    prompts: list[list[int]]
    done: int = 0
    state: Any = None
    mask: torch.Tensor | None = None
    # Lean path: the distinct prompts, each prompt's row among them, and where each distinct
    # prompt's computation starts (after the prefix copied from the prefix cache).
    unique: list[list[int]] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return [len(p) for p in self.prompts]


class Rows(Protocol):
    next_tokens: list[int]
    forward: Any

    def __len__(self) -> int: ...

    def fits(self, prompts: list[list[int]]) -> bool:
        """Whether these prompts may join now (the cache's memory budget)."""

    def advance(self, pre: Prefill, chunk: int) -> torch.Tensor | None:
        """Prefill the next ``chunk`` positions; at the end, each prompt's last logits."""

    def join(self, pre: Prefill, keep: list[int], next_tokens: list[int]) -> None:
        """Add the prefilled prompts ``keep`` (indices into ``pre.prompts``) as running rows;
        ``next_tokens`` has one token per prompt (those not kept are ignored)."""

    def step(self) -> torch.Tensor:
        """One decode step of every row (input: ``next_tokens``); logits [rows, vocab]."""

    def remove(self, gone: list[int]) -> list[int]:
        """Drop rows ``gone``; return the old index of each remaining row, in its new place."""

    def clear(self) -> None: ...


def rows_for(
    model: Any,
    fast_path: bool = True,
    prefix_cache_bytes: int = 0,
    max_rows: int = 0,
    kv_cache_bytes: int = 0,
) -> Rows:
    """The fast path where the model allows it, else transformers' forward."""
    if fast_path and lean_llama.supports(model):
        lean = lean_llama.LeanLlama(model)
        return LeanRows(lean, PrefixCache(prefix_cache_bytes), max_rows, kv_cache_bytes)
    return TransformersRows(model)


class TransformersRows:
    """Any causal LM: transformers' forward and cache, rows left-padded (``KVBatch``)."""

    def __init__(self, model: Any) -> None:
        self.forward = model
        self._device = model.device
        self._batch = KVBatch()

    def __len__(self) -> int:
        return len(self._batch)

    def fits(self, prompts: list[list[int]]) -> bool:
        return True

    @property
    def next_tokens(self) -> list[int]:
        return self._batch.next_tokens

    @next_tokens.setter
    def next_tokens(self, tokens: list[int]) -> None:
        self._batch.next_tokens = tokens

    def advance(self, pre: Prefill, chunk: int) -> torch.Tensor | None:
        if len(pre.prompts) > 1:
            return self._prefill_group(pre)
        prompt = pre.prompts[0]
        out = self.forward(
            input_ids=torch.tensor([prompt[pre.done : pre.done + chunk]], device=self._device),
            cache=pre.state,
            use_cache=True,
            logits_to_keep=1,
        )
        pre.state = out.cache
        pre.done = min(len(prompt), pre.done + chunk)
        if pre.done < len(prompt):
            return None
        pre.mask = torch.ones((1, len(prompt)), dtype=torch.long, device=self._device)
        return out.logits[:, -1, :].float()

    def _prefill_group(self, pre: Prefill) -> torch.Tensor:
        """Whole prompts in one left-padded pass (one pass's fixed cost for the group)."""
        lengths = pre.lengths
        longest = max(lengths)
        ids = torch.tensor(
            [[0] * (longest - n) + p for p, n in zip(pre.prompts, lengths, strict=True)],
            device=self._device,
        )
        mask = torch.tensor([[0] * (longest - n) + [1] * n for n in lengths], device=self._device)
        out = self.forward(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            cache=None,
            use_cache=True,
            logits_to_keep=1,
        )
        pre.state, pre.mask, pre.done = out.cache, mask, longest
        return out.logits[:, -1, :].float()

    def join(self, pre: Prefill, keep: list[int], next_tokens: list[int]) -> None:
        assert pre.mask is not None
        joined = KVBatch.of(pre.state, pre.mask, pre.lengths, next_tokens)
        joined.keep(keep)
        self._batch.merge(joined)

    def step(self) -> torch.Tensor:
        return self._batch.step(self.forward)

    def remove(self, gone: list[int]) -> list[int]:
        keep = [i for i in range(len(self._batch)) if i not in set(gone)]
        self._batch.keep(keep)
        return keep

    def clear(self) -> None:
        self._batch = KVBatch()


class LeanRows:
    """LLaMA-style models on ``lean_llama``: rows 0..n-1 of a static cache, each at its own
    length. Leaving rows are replaced by the last ones (one row's copy each), never re-packed.

    Prefill computes each distinct prompt once, and only past the longest prefix found in the
    prefix cache; a group's shared beginning (the system message of every chat) is computed
    once and cached before the group runs."""

    def __init__(
        self,
        lean: lean_llama.LeanLlama,
        prefixes: PrefixCache,
        max_rows: int = 0,
        budget_bytes: int = 0,
    ) -> None:
        self._lean = lean
        self.forward = lean.forward
        self._device = lean.device
        self._cache = lean.new_cache(max_rows)
        self.budget_bytes = budget_bytes
        self.prefixes = prefixes
        self.lengths: list[int] = []
        self.next_tokens: list[int] = []

    def __len__(self) -> int:
        return len(self.lengths)

    def fits(self, prompts: list[list[int]]) -> bool:
        """Whether these prompts can join without the cache growing past its budget."""
        if not self.budget_bytes:
            return True
        longest = max(max(map(len, prompts)), max(self.lengths, default=0)) + 1
        rows, positions = self._cache.planned(len(self.lengths) + len(prompts), longest)
        return rows * positions * self._cache.bytes_per_position <= self.budget_bytes

    def _tensor(self, values: list[Any]) -> torch.Tensor:
        return torch.tensor(values, device=self._device)

    def _stage(self, pre: Prefill) -> None:
        """Distinct prompts, their staging rows, and their cached prefixes copied in."""
        rows: dict[tuple[int, ...], int] = {}
        for prompt in pre.prompts:
            slot = rows.setdefault(tuple(prompt), len(rows))
            if slot == len(pre.unique):
                pre.unique.append(prompt)
            pre.slots.append(slot)
        self._cache_shared_prefix(pre.unique)
        staging = pre.state = self._lean.new_cache()
        staging.reserve(len(pre.unique), max(map(len, pre.unique)))
        for row, prompt in enumerate(pre.unique):
            entry, n = self.prefixes.lookup(prompt)
            if entry is not None:
                PrefixCache.restore(entry, n, staging, row)
            pre.starts.append(n)

    def _cache_shared_prefix(self, prompts: list[list[int]]) -> None:
        if len(prompts) < 2 or self.prefixes.budget <= 0:
            return
        n = min(shared_length(prompts[0], p) for p in prompts[1:])
        n = min(n, *(len(p) - 1 for p in prompts))
        prefix = prompts[0][:n]
        if n < MIN_SHARED_TOKENS or self.prefixes.covers(prefix):
            return
        row = self._lean.new_cache()
        entry, start = self.prefixes.lookup(prefix)
        if entry is not None:
            PrefixCache.restore(entry, start, row, 0)
        self.forward(self._tensor([prefix[start:]]), row, slice(0, 1), self._tensor([start]))
        self.prefixes.store(prefix, row, 0)

    def advance(self, pre: Prefill, chunk: int) -> torch.Tensor | None:
        if pre.state is None:
            self._stage(pre)
            pre.done = pre.starts[0]
        staging: lean_llama.RowCache = pre.state
        if len(pre.unique) == 1:  # one prompt, a chunk at a time
            prompt = pre.unique[0]
            ids = self._tensor([prompt[pre.done : pre.done + chunk]])
            logits = self.forward(ids, staging, slice(0, 1), self._tensor([pre.done]))
            pre.done = min(len(prompt), pre.done + chunk)
            if pre.done < len(prompt):
                return None
        else:  # a group: one right-padded pass (it fits in a chunk)
            suffixes = [p[s:] for p, s in zip(pre.unique, pre.starts, strict=True)]
            longest = max(map(len, suffixes))
            ids = self._tensor([p + [0] * (longest - len(p)) for p in suffixes])
            keep = self._tensor([len(p) - 1 for p in suffixes])
            rows = slice(0, len(suffixes))
            logits = self.forward(ids, staging, rows, self._tensor(pre.starts), keep)
            pre.done = max(map(len, pre.prompts))
        for row, prompt in enumerate(pre.unique):
            self.prefixes.store(prompt, staging, row)
        return logits.index_select(0, self._tensor(pre.slots))

    def join(self, pre: Prefill, keep: list[int], next_tokens: list[int]) -> None:
        staged: lean_llama.RowCache = pre.state
        lengths = pre.lengths
        first = len(self.lengths)
        self._cache.reserve(first + len(keep), max(lengths[i] for i in keep) + 1)
        for offset, i in enumerate(keep):
            n = lengths[i]
            self._cache.copy_row(staged, pre.slots[i], first + offset, n)
            self.lengths.append(n)
            self.next_tokens.append(next_tokens[i])

    def step(self) -> torch.Tensor:
        n = len(self.lengths)
        ids = self._tensor(self.next_tokens)[:, None]
        logits = self.forward(ids, self._cache, slice(0, n), self._tensor(self.lengths))
        self.lengths = [length + 1 for length in self.lengths]
        return logits

    def remove(self, gone: list[int]) -> list[int]:
        n = len(self.lengths)
        left = n - len(gone)
        order = list(range(n))
        holes = sorted(i for i in gone if i < left)
        movers = [i for i in range(left, n) if i not in set(gone)]
        for hole, mover in zip(holes, movers, strict=True):
            self._cache.copy_row(self._cache, mover, hole, self.lengths[mover])
            order[hole] = mover
        order = order[:left]
        self.lengths = [self.lengths[i] for i in order]
        self.next_tokens = [self.next_tokens[i] for i in order]
        if not order:
            self._cache.shrink()
        return order

    def clear(self) -> None:
        self.lengths, self.next_tokens = [], []
        self._cache.shrink()
