"""Ordered parallel map with bounded memory, over a process pool or in-process.

``Pool.imap`` alone reads its whole input ahead (no back-pressure), which would pull an entire
source into memory; here at most two batches are in flight. Pools start with ``forkserver`` so
workers never inherit the parent's threads (tokenizers' thread pool, a Celery worker's threads).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BATCH_SIZE = 2048
CHUNK_SIZE = 64

OrderedMap = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@contextmanager
def ordered_map(workers: int | None) -> Iterator[OrderedMap]:
    """Yield ``map_fn(func, items)`` that returns results in input order.

    With one worker (or where processes cannot be started, e.g. inside a daemonic process) the
    work runs in this process, which is also what lets tests patch the functions.
    """
    workers = workers or default_workers()
    pool = None
    if workers > 1:
        try:
            pool = multiprocessing.get_context("forkserver").Pool(workers)
        except (AssertionError, OSError, ValueError) as exc:
            log.warning(
                "event=pool_unavailable workers=%d error=%r; running in-process", workers, exc
            )
    if pool is None:
        yield lambda func, items: map(func, items)
        return

    def pooled(func: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        pending: deque = deque()
        for batch in batched(items, BATCH_SIZE):
            pending.append(pool.imap(func, batch, CHUNK_SIZE))
            if len(pending) > 1:
                yield from pending.popleft()
        while pending:
            yield from pending.popleft()

    try:
        yield pooled
    finally:
        pool.terminate()
        pool.join()
