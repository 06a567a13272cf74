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

from services.model_worker.decoding import SequenceDecoder
from services.model_worker.kv_batch import KVBatch
from services.model_worker.sampling import Sampler
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
    prefilled: int = 0
    cache: Any = None
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


class BatchScheduler:
    """Owns the model in one thread; the event loop only submits and reads results."""

    def __init__(
        self,
        model: Any,
        max_batch_size: int = 32,
        prefill_chunk: int = 512,
    ) -> None:
        self._model = model
        self._device = model.device
        self.max_batch_size = max_batch_size
        self.prefill_chunk = prefill_chunk
        self._incoming: collections.deque[Sequence] = collections.deque()
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._prefilling: Sequence | None = None
        self._rows: list[Sequence] = []
        self._batch = KVBatch()
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
    def running(self) -> int:
        return len(self._rows) + (self._prefilling is not None)

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
        for seq in [*self._rows, *self._waiting, *self._incoming]:
            seq.finish(
                {
                    "text": "The worker is shutting down.",
                    "error_code": int(ErrorCode.INTERNAL_ERROR),
                }
            )

    def _iteration(self) -> bool:
        while self._incoming:
            self._waiting.append(self._incoming.popleft())
        self._drop_cancelled()
        busy = self._prefill_one_chunk()
        if self._rows:
            self._decode_step()
            busy = True
        return busy

    def _drop_cancelled(self) -> None:
        if any(s.cancelled.is_set() for s in self._waiting):
            for seq in [s for s in self._waiting if s.cancelled.is_set()]:
                seq.finish()
            self._waiting = collections.deque(s for s in self._waiting if not s.cancelled.is_set())
        if self._prefilling is not None and self._prefilling.cancelled.is_set():
            self._prefilling.finish()
            self._prefilling = None
        gone = [i for i, s in enumerate(self._rows) if s.cancelled.is_set()]
        if gone:
            for i in gone:
                self._rows[i].finish()
            self._keep_rows([i for i in range(len(self._rows)) if i not in set(gone)])

    def _keep_rows(self, rows: list[int]) -> None:
        self._batch.keep(rows)
        self._rows = [self._rows[i] for i in rows]

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

    def _prefill_one_chunk(self) -> bool:
        seq = self._prefilling
        if seq is None:
            if not self._waiting or len(self._rows) >= self.max_batch_size:
                return False
            group = self._take_group()
            if len(group) > 1:
                self._prefill_group(group)
                return True
            seq = self._prefilling = group[0]
        try:
            start = seq.prefilled
            chunk = seq.prompt_ids[start : start + self.prefill_chunk]
            out = self._model(
                input_ids=torch.tensor([chunk], device=self._device),
                cache=seq.cache,
                use_cache=True,
                logits_to_keep=1,
            )
            seq.cache = out.cache
            seq.prefilled += len(chunk)
            if seq.prefilled < len(seq.prompt_ids):
                return True
            token, logprob = seq.sampler.choose(
                out.logits[:, -1, :].float(),
                seq.token_ids(self._device),
                with_logprob=seq.decoder.token_events,
            )
        except Exception as exc:
            log.exception("event=prefill_failed")
            self._prefilling = None
            seq.finish(error_chunk_for(exc))
            return True
        seq.first_token_at = time.monotonic()
        chunk_out = seq.decoder.add(token, logprob)
        if seq.decoder.finished:
            self._prefilling = None
            seq.finish(chunk_out)
            return True
        self._batch.add(seq.cache, len(seq.prompt_ids), token)
        seq.cache = None  # the batch owns it now
        self._rows.append(seq)
        self._prefilling = None
        if chunk_out is not None:
            seq.emit(chunk_out)
        return True

    def _prefill_group(self, group: list[Sequence]) -> None:
        """Prefill several whole prompts in one left-padded forward pass (one pass's fixed cost
        instead of one per request: what makes many clients arriving together start fast), then
        join their rows to the running batch with one copy of the cache."""
        lengths = [len(s.prompt_ids) for s in group]
        longest = max(lengths)
        try:
            ids = torch.tensor(
                [[0] * (longest - n) + s.prompt_ids for s, n in zip(group, lengths, strict=True)],
                device=self._device,
            )
            mask = torch.tensor(
                [[0] * (longest - n) + [1] * n for n in lengths], device=self._device
            )
            out = self._model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                cache=None,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :].float()
            choices = [
                s.sampler.choose(
                    logits[i : i + 1], s.token_ids(self._device), s.decoder.token_events
                )
                for i, s in enumerate(group)
            ]
        except Exception as exc:
            log.exception("event=prefill_failed rows=%d", len(group))
            for seq in group:
                seq.finish(error_chunk_for(exc))
            return
        now = time.monotonic()
        keep, chunks = [], []
        for i, (seq, (token, logprob)) in enumerate(zip(group, choices, strict=True)):
            seq.prefilled, seq.first_token_at = lengths[i], now
            chunk = seq.decoder.add(token, logprob)
            if seq.decoder.finished:
                seq.finish(chunk)
            else:
                keep.append(i)
                chunks.append(chunk)
        joined = KVBatch.of(out.cache, mask, lengths, [token for token, _ in choices])
        joined.keep(keep)
        self._batch.merge(joined)
        self._rows += [group[i] for i in keep]
        for i, chunk in zip(keep, chunks, strict=True):
            if chunk is not None:
                group[i].emit(chunk)

    def _decode_step(self) -> None:
        try:
            logits = self._batch.step(self._model)
            greedy = torch.argmax(logits, dim=-1).tolist()
            choices = [
                (greedy[i], None)
                if seq.sampler.plain_greedy and not seq.decoder.token_events
                else seq.sampler.choose(
                    logits[i : i + 1],
                    seq.token_ids(self._device),
                    with_logprob=seq.decoder.token_events,
                )
                for i, seq in enumerate(self._rows)
            ]
            tokens = [token for token, _ in choices]
        except Exception as exc:
            log.exception("event=decode_failed rows=%d", len(self._rows))
            for seq in self._rows:
                seq.finish(error_chunk_for(exc))
            self._rows, self._batch = [], KVBatch()
            return
        keep, done = [], []
        for i, (seq, (token, logprob)) in enumerate(zip(self._rows, choices, strict=True)):
            chunk = seq.decoder.add(token, logprob)
            if seq.decoder.finished:
                done.append((seq, chunk))
            else:
                if chunk is not None:
                    seq.emit(chunk)
                keep.append(i)
        self._batch.next_tokens = tokens
        if done:
            self._keep_rows(keep)
        # Finish only after the rows are gone, so a client that sees its end sees it counted.
        for seq, chunk in done:
            seq.finish(chunk)
