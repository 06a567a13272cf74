"""Continuous batching: one scheduler thread runs every request through a shared decode batch.

Each loop iteration does at most one prefill chunk (so a long prompt never stalls the running
batch for more than one chunk) and one decode step for every running sequence. New requests join
at token boundaries; finished and cancelled ones leave at once. Each sequence keeps its own
sampling parameters, stop rules and random generator, and attention is masked per row, so a greedy
answer does not depend on what else is in the batch.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from services.model_worker.decode_rows import LeanRows, Prefill, Rows, rows_for
from services.model_worker.decoding import SequenceDecoder
from services.model_worker.sampling import Sampler, choose_many
from shared.constants import ErrorCode
from shared.schemas import GenerateParams

log = logging.getLogger(__name__)

# Sent after the last snapshot (or an error chunk) of a request.
END_OF_STREAM = object()

Emit = Callable[[Any], None]


@dataclass
class Sequence:
    """One request inside the scheduler."""

    params: GenerateParams
    prompt_ids: list[int]
    sampler: Sampler
    decoder: SequenceDecoder
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    on_done: Callable[[], None] | None = None
    done: bool = False

    def token_ids(self, device: Any) -> torch.Tensor:
        return torch.tensor([self.prompt_ids + self.decoder.generated], device=device)

    def finish(self, chunk: dict[str, Any] | None = None) -> None:
        if self.done:
            return
        self.done = True
        # Release the admission slot before the client can see the end of its stream.
        if self.on_done is not None:
            self.on_done()
        if chunk is not None:
            self.emit(chunk)
        self.emit(END_OF_STREAM)


def error_chunk_for(exc: BaseException) -> dict[str, Any]:
    """The last chunk of a request whose generation raised: the client sees why."""
    if isinstance(exc, torch.OutOfMemoryError):
        return {
            "text": f"Out of memory while generating: {exc}",
            "error_code": int(ErrorCode.CUDA_OUT_OF_MEMORY),
        }
    return {
        "text": f"Internal error while generating: {type(exc).__name__}: {exc}",
        "error_code": int(ErrorCode.INTERNAL_ERROR),
    }


class ComputeThreads:
    """How many threads the scheduler's torch ops use, per step.

    Decoding a few rows is a matrix-vector product bound by memory bandwidth: a second thread
    adds little, and every operation then waits at a barrier for a thread the OS may have lent
    to the HTTP side or the clients (measured: 1 client, 2 threads 31 tok/s, 1 thread 34). So
    steps of fewer than ``single_below`` rows run on one thread, prefill and bigger batches on
    ``full`` (torch's own count). 0: always ``full``.
    """

    def __init__(self, single_below: int) -> None:
        self.full = torch.get_num_threads()
        self.single_below = single_below
        self._current = self.full

    def for_rows(self, rows: int) -> int:
        return 1 if rows < self.single_below else self.full

    def use(self, threads: int) -> None:
        if threads != self._current:
            torch.set_num_threads(threads)
            self._current = threads


class BatchScheduler:
    """Owns the model in one thread; the event loop only submits and reads results."""

    def __init__(
        self,
        model: Any,
        max_batch_size: int = 32,
        prefill_chunk: int = 512,
        fast_path: bool = True,
        prefix_cache_bytes: int = 0,
        decode_threads_below: int = 0,
        kv_cache_bytes: int = 0,
        prefill_budget: int = 2048,
        *,
        gather_gap: float = 0.0,
        gather_max: float = 0.0,
    ) -> None:
        self._device = model.device
        self.max_batch_size = max_batch_size
        self.prefill_chunk = prefill_chunk
        self.prefill_budget = prefill_budget
        self.gather_gap = gather_gap
        self.gather_max = gather_max
        self._last_arrival = 0.0
        self._incoming: collections.deque[Sequence] = collections.deque()
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._prefilling: tuple[list[Sequence], Prefill] | None = None
        self._rows: list[Sequence] = []
        self._batch: Rows = rows_for(
            model, fast_path, prefix_cache_bytes, max_batch_size, kv_cache_bytes
        )
        on_cpu = torch.device(self._device).type == "cpu"
        self._threads = ComputeThreads(decode_threads_below if on_cpu else 0)
        self._wake = threading.Event()
        self._stopping = False
        self._admitted = 0
        self._preparing = 0
        self._admitted_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="batch-scheduler", daemon=True)
        self._thread.start()

    # --- called from other threads -------------------------------------------------------
    def reserve(self) -> None:
        """Count a request from now on, while its prompt is tokenised elsewhere; ``submit`` it
        next, or ``unreserve`` it when it cannot be prepared."""
        with self._admitted_lock:
            self._admitted += 1
            self._preparing += 1
            self._last_arrival = time.monotonic()

    def unreserve(self) -> None:
        with self._admitted_lock:
            self._admitted -= 1
            self._preparing -= 1

    def submit(self, seq: Sequence) -> None:
        """Hand a reserved request to the scheduler thread."""
        seq.on_done = self._release
        self._incoming.append(seq)
        with self._admitted_lock:
            self._preparing -= 1
        self._wake.set()

    def _release(self) -> None:
        with self._admitted_lock:
            self._admitted -= 1

    @property
    def admitted(self) -> int:
        """Requests submitted and not yet finished, counted without the scheduler's races.

        ``running`` and ``waiting`` read lists the scheduler thread is moving sequences
        between, so their sum can dip for a moment; admission control must not see that dip.
        """
        return self._admitted

    def cancel(self, cancelled: threading.Event) -> None:
        """Stop a request (``cancelled`` is its Sequence's flag) at its next token."""
        cancelled.set()
        self._wake.set()

    @property
    def path(self) -> str:
        """Which forward decodes: ``lean_llama`` (the fast path) or ``transformers``."""
        return "lean_llama" if isinstance(self._batch, LeanRows) else "transformers"

    @property
    def running(self) -> int:
        return len(self._rows) + (len(self._prefilling[0]) if self._prefilling else 0)

    @property
    def waiting(self) -> int:
        return self._preparing + len(self._incoming) + len(self._waiting)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=10)

    # --- the scheduler thread ------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stopping:
                try:
                    busy = self._iteration()
                except Exception:  # the scheduler must outlive any one bad request
                    log.exception("event=scheduler_iteration_failed")
                    busy = False
                if not busy:
                    self._wake.wait(timeout=0.5)
                    self._wake.clear()
        prefilling = self._prefilling[0] if self._prefilling else []
        for seq in [*self._rows, *prefilling, *self._waiting, *self._incoming]:
            seq.finish(
                {
                    "text": "The worker is shutting down.",
                    "error_code": int(ErrorCode.INTERNAL_ERROR),
                }
            )

    def _iteration(self) -> bool:
        """Prefill while requests wait, up to ``prefill_budget`` prompt tokens once streams
        run, then one decode step. Many clients arriving together then get their first tokens
        after the prefills alone, not after a decode step between every two prefill groups;
        a running stream waits at most about one budget of prefill for its next token."""
        self._threads.use(self._threads.full)
        if not self._rows and self._prefilling is None and self.gather_max > 0:
            self._gather_burst()
        busy, prefilled = False, 0
        while (not self._rows or prefilled < self.prefill_budget) and not self._stopping:
            while self._incoming:
                self._waiting.append(self._incoming.popleft())
            self._drop_cancelled()
            tokens = self._prefill_one_chunk()
            if not tokens:
                break
            busy, prefilled = True, prefilled + tokens
        if self._rows:
            self._threads.use(self._threads.for_rows(len(self._rows)))
            self._decode_step()
            busy = True
        return busy

    def _gather_burst(self) -> None:
        """With nothing running, wait before the first prefill pass while requests keep
        arriving: until a pass's worth waits, none has arrived for ``gather_gap`` seconds (none
        is being tokenised either), or the oldest waiting request has waited ``gather_max``
        (one left over from a bigger burst does not wait again).

        A pass costs about the same for one prompt as for a full group (reading the weights
        dominates), so a burst whose first request went alone paid a whole extra pass before
        the rest got their first tokens. The controller relays a burst one request at a time,
        so without this its first request nearly always went alone.
        """
        while not self._stopping:
            self._wake.clear()
            while self._incoming:
                self._waiting.append(self._incoming.popleft())
            if not self._waiting or self._fills_a_pass():
                return
            now = time.monotonic()
            deadline = min(s.submitted_at for s in self._waiting) + self.gather_max
            quiet_from = self._last_arrival + self.gather_gap
            if now >= deadline or (now >= quiet_from and not self._preparing):
                return
            self._wake.wait((min(quiet_from, deadline) if now < quiet_from else deadline) - now)

    def _fills_a_pass(self) -> bool:
        longest = max(len(s.prompt_ids) for s in self._waiting)
        return (
            len(self._waiting) >= self.max_batch_size - len(self._rows)
            or longest * len(self._waiting) >= self.prefill_chunk
        )

    def _drop_cancelled(self) -> None:
        if any(s.cancelled.is_set() for s in self._waiting):
            for seq in [s for s in self._waiting if s.cancelled.is_set()]:
                seq.finish()
            self._waiting = collections.deque(s for s in self._waiting if not s.cancelled.is_set())
        if self._prefilling is not None and all(s.cancelled.is_set() for s in self._prefilling[0]):
            for seq in self._prefilling[0]:
                seq.finish()
            self._prefilling = None
        gone = [i for i, s in enumerate(self._rows) if s.cancelled.is_set()]
        if gone:
            for i in gone:
                self._rows[i].finish()
            self._remove_rows(gone)

    def _remove_rows(self, gone: list[int]) -> None:
        order = self._batch.remove(gone)
        self._rows = [self._rows[i] for i in order]

    def _take_group(self) -> list[Sequence]:
        """Waiting requests to prefill together: while their padded prompts fit in one
        prefill chunk and the batch has room. A prompt longer than a chunk goes alone."""
        group: list[Sequence] = []
        longest = 0
        room = self.max_batch_size - len(self._rows)
        while self._waiting and len(group) < room:
            n = len(self._waiting[0].prompt_ids)
            if group and (max(longest, n) * (len(group) + 1) > self.prefill_chunk):
                break
            group.append(self._waiting.popleft())
            longest = max(longest, n)
            if n > self.prefill_chunk:
                break
        return group

    def _prefill_one_chunk(self) -> int:
        """One prefill pass: a group of whole prompts (one left- or right-padded pass, one
        pass's fixed cost for all of them: what makes many clients arriving together start
        fast), or the next chunk of one long prompt. Returns the prompt positions it computed
        (a group's, padded), 0 when there was nothing to prefill."""
        if self._prefilling is None:
            if not self._waiting or len(self._rows) >= self.max_batch_size:
                return 0
            group = self._take_group()
            # Within the cache's budget: a smaller group, or (while rows run, which will free
            # memory) none yet. One request alone always runs.
            while len(group) > 1 and not self._batch.fits([s.prompt_ids for s in group]):
                self._waiting.appendleft(group.pop())
            if self._rows and not self._batch.fits([s.prompt_ids for s in group]):
                self._waiting.extendleft(reversed(group))
                return 0
            self._prefilling = (group, Prefill([s.prompt_ids for s in group]))
        group, pre = self._prefilling
        if len(group) > 1:
            tokens = len(group) * max(len(s.prompt_ids) for s in group)
        else:
            tokens = max(1, min(self.prefill_chunk, len(group[0].prompt_ids) - pre.done))
        try:
            logits = self._batch.advance(pre, self.prefill_chunk)
            if logits is None:
                return tokens
            choices = [
                s.sampler.choose(
                    logits[i : i + 1], s.token_ids(self._device), s.decoder.token_events
                )
                for i, s in enumerate(group)
            ]
        except Exception as exc:
            log.exception("event=prefill_failed rows=%d", len(group))
            self._prefilling = None
            for seq in group:
                seq.finish(error_chunk_for(exc))
            return tokens
        self._prefilling = None
        self._start_decoding(group, pre, choices)
        return tokens

    def _start_decoding(
        self, group: list[Sequence], pre: Prefill, choices: list[tuple[int, float | None]]
    ) -> None:
        """Each prefilled prompt's first token; those not finished by it join the batch."""
        now = time.monotonic()
        keep, chunks = [], []
        for i, (seq, (token, logprob)) in enumerate(zip(group, choices, strict=True)):
            seq.first_token_at = now
            chunk = seq.decoder.add(token, logprob)
            if seq.decoder.finished:
                seq.finish(chunk)
            else:
                keep.append(i)
                chunks.append(chunk)
        if keep:
            self._batch.join(pre, keep, [token for token, _ in choices])
            self._rows += [group[i] for i in keep]
        for i, chunk in zip(keep, chunks, strict=True):
            if chunk is not None:
                group[i].emit(chunk)

    def _decode_step(self) -> None:
        try:
            logits = self._batch.step()
            rows = self._rows
            choices = choose_many(
                [seq.sampler for seq in rows],
                logits,
                lambda i: rows[i].token_ids(self._device),
                [seq.decoder.token_events for seq in rows],
            )
            tokens = [token for token, _ in choices]
        except Exception as exc:
            log.exception("event=decode_failed rows=%d", len(self._rows))
            for seq in self._rows:
                seq.finish(error_chunk_for(exc))
            self._rows = []
            self._batch.clear()
            return
        gone, done = [], []
        for i, (seq, (token, logprob)) in enumerate(zip(self._rows, choices, strict=True)):
            chunk = seq.decoder.add(token, logprob)
            if seq.decoder.finished:
                gone.append(i)
                done.append((seq, chunk))
            elif chunk is not None:
                seq.emit(chunk)
        self._batch.next_tokens = tokens
        if gone:
            self._remove_rows(gone)
        # Finish only after the rows are gone, so a client that sees its end sees it counted.
        for seq, chunk in done:
            seq.finish(chunk)
