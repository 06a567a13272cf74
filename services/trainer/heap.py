"""Hand the C heap's free pages back to the OS between training steps (glibc ``malloc_trim``).

Why: on the CPU, PyTorch allocates tensors with the C allocator, and a training step frees about
as much as it allocates (the activations kept for backward). glibc keeps freed chunks below its
mmap threshold in the heap, and rows of different packed lengths free and reuse them in
different orders, so the process grows step after step: for SmolLM2 LoRA on 2048-token rows the
resident set crept from 3.9 to 5.2 GiB over eight steps while live tensors stayed near 3 GiB.
Trimming after each step's backward keeps the peak near the first step's (5.16 -> 4.67 GiB over
the same eight steps) for a few percent of step time (services/trainer/README.md, Throughput).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """``malloc_trim(0)`` where the C library has it; True when it released memory."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
