"""Keys and values of recent prompts, so a prompt that starts the same way skips that part.

Chat requests share long prefixes: the system message and template of every conversation, and
the whole history of a conversation's next turn. Each entry holds one prompt's keys/values (all
layers, compact: ``[layers, kv_heads, length, head_dim]``); a new prompt copies the longest
matching prefix into its prefill row and computes only the rest. Entries are evicted least
recently used first, within a budget of bytes. Used by the lean decode path (``decode_rows``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import torch

from services.model_worker.lean_llama import RowCache

MIN_SHARED_TOKENS = 16  # shorter matches are not worth a copy


@dataclass
class Entry:
    tokens: list[int]
    keys: torch.Tensor  # [layers, kv_heads, length, head_dim]
    values: torch.Tensor

    @property
    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()


def shared_length(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


class PrefixCache:
    """Least-recently-used prompt prefixes within ``budget_bytes`` (0: disabled)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.hits = 0
        self.hit_tokens = 0
        self._entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: list[int]) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with ``prompt`` and the usable length: at most
        ``len(prompt) - 1``, since the last prompt token must run to give the first logits."""
        best, best_len = None, 0
        for key, entry in self._entries.items():
            n = min(shared_length(entry.tokens, prompt), len(prompt) - 1)
            if n > best_len:
                best, best_len, best_key = entry, n, key
        if best is None or best_len < MIN_SHARED_TOKENS:
            return None, 0
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.hit_tokens += best_len
        return best, best_len

    def covers(self, prompt: list[int]) -> bool:
        """Whether an entry already holds all of ``prompt``."""
        return any(shared_length(e.tokens, prompt) == len(prompt) for e in self._entries.values())

    def store(self, tokens: list[int], cache: RowCache, row: int) -> None:
        """Keep the first ``len(tokens)`` positions of ``cache`` row ``row`` for ``tokens``."""
        n = len(tokens)
        if self.budget <= 0 or n < MIN_SHARED_TOKENS or self.covers(tokens):
            return
        entry = Entry(
            list(tokens),
            torch.stack([k[row, :, :n] for k in cache.keys]),
            torch.stack([v[row, :, :n] for v in cache.values]),
        )
        if entry.nbytes > self.budget // 4:  # one long prompt must not flush everything
            return
        while self._entries and self.used + entry.nbytes > self.budget:
            _, old = self._entries.popitem(last=False)
            self.used -= old.nbytes
        self._entries[self._next_id] = entry
        self._next_id += 1
        self.used += entry.nbytes

    @staticmethod
    def restore(entry: Entry, length: int, cache: RowCache, row: int) -> None:
        """Copy the entry's first ``length`` positions into ``cache`` row ``row``."""
        for i, (k, v) in enumerate(zip(cache.keys, cache.values, strict=True)):
            k[row, :, :length] = entry.keys[i, :, :length]
            v[row, :, :length] = entry.values[i, :, :length]
