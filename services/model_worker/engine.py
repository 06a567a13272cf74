"""The serving core of a worker: one loaded model behind one of two engines.

- ``batch`` (default): continuous batching in one scheduler thread (``batching.py``).
- ``sequential``: the original's way, each request decoded alone in its own thread, at most
  ``max_batch_size`` at once; kept as a fallback and as the benchmark's baseline.

Both keep the event loop free (status calls and heartbeats answer while generating, and while a
long prompt is tokenised: that happens in a thread too), bound the number of waiting requests
(beyond it a request is refused at once with ``EngineOverloaded``, to be retried later), and stop
a request's generation at its next token when its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from services.model_worker.batching import END_OF_STREAM, BatchScheduler, Sequence, error_chunk_for
from services.model_worker.decoding import SequenceDecoder
from services.model_worker.embedding import EmbeddingInput, Embeddings, embed, tokenize_inputs
from services.model_worker.errors import (
    ContextOverflow,
    EngineError,
    EngineOverloaded,
    InvalidRequest,
)
from services.model_worker.generation import generate_stream, prepare_prompt
from services.model_worker.loader import LoadedModel
from services.model_worker.metrics import WorkerMetrics
from services.model_worker.sampling import Sampler
from services.model_worker.sampling_defaults import read_sampling_defaults, with_defaults
from shared.constants import ErrorCode
from shared.conversation import Conversation
from shared.schemas import GenerateParams, WorkerStatus

log = logging.getLogger(__name__)

EngineMode = Literal["batch", "sequential"]
RETRY_AFTER_SECONDS = 1


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:16]}"


def _emitter(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> Callable[[Any], None]:
    """Hand results from the scheduler thread to the request's event loop."""

    def emit(item: Any) -> None:
        # A closed loop means nobody is listening any more (shutdown); drop the item.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    return emit


class ServingEngine:
    """What every engine shares: admission with a bounded queue, validation, metrics, status.

    Subclasses say how many requests are running and waiting, and implement ``_stream``.
    """

    def __init__(
        self,
        model_names: list[str],
        conversation: Conversation,
        tokenizer: Any,
        context_len: int,
        vocab_size: int,
        device: str,
        max_batch_size: int,
        max_queue: int,
    ) -> None:
        self.model_names = model_names
        self.conversation = conversation
        self.tokenizer = tokenizer
        self.context_len = context_len
        self.vocab_size = vocab_size
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        # The model's generation_config.json values, for requests that leave them out.
        self.sampling_defaults: dict[str, Any] = {}
        self.metrics = WorkerMetrics(
            model_names[0], lambda: self.running + self.waiting, lambda: self.running
        )

    @property
    def running(self) -> int:
        raise NotImplementedError

    @property
    def waiting(self) -> int:
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        """Admitted requests not yet finished: what admission control compares to its limit."""
        return self.running + self.waiting

    def _stream(self, params: GenerateParams, token_events: bool) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Release threads and connections."""

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            model_names=self.model_names, speed=1.0, queue_length=self.running + self.waiting
        )

    def details(self) -> dict[str, Any]:
        """What ``/model_details`` says besides the context length (device, dtype)."""
        return {"sampling_defaults": self.sampling_defaults}

    def validate(self, params: GenerateParams) -> None:
        """Checks that need the model; raise ``InvalidRequest`` naming the parameter."""
        if not params.prompt:
            raise InvalidRequest("prompt", "must not be empty")
        if params.max_new_tokens >= self.context_len:
            raise ContextOverflow(params.max_new_tokens, self.context_len)
        bad = [i for i in params.stop_token_ids or [] if i >= self.vocab_size]
        if bad:
            raise InvalidRequest(
                "stop_token_ids",
                f"{bad} are outside the vocabulary of {self.vocab_size} tokens",
                ErrorCode.PARAM_OUT_OF_RANGE,
            )

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt).input_ids)

    def open_stream(
        self,
        params: GenerateParams,
        token_events: bool = False,
        request_id: str = "",
        protocol: str = "fastchat",
    ) -> AsyncIterator[dict[str, Any]]:
        """Admit a request now (or refuse it: ``EngineOverloaded``) and return its stream of
        snapshots.

        With ``token_events`` every generated token produces an item carrying a ``token``
        (id, text, logprob, special) and the last one a ``stop_kind``. Closing the stream early
        (client went away) stops the generation at its next token.
        """
        params = with_defaults(params, self.sampling_defaults)
        if self.in_flight >= self.max_batch_size + self.max_queue:
            self.metrics.rejected("overloaded")
            raise EngineOverloaded(self.running, self.waiting, self.max_queue, RETRY_AFTER_SECONDS)
        chunks = self._stream(params, token_events)
        return self.metrics.observe(chunks, request_id or new_request_id(), protocol)

    async def embed(self, inputs: list[EmbeddingInput]) -> Embeddings:
        """Embeddings of ``inputs``; engines that cannot compute them refuse naming ``model``."""
        raise InvalidRequest(
            "model",
            f"{self.model_names[0]} is served by a backend that does not compute embeddings",
        )

    async def generate(self, params: GenerateParams, request_id: str = "") -> dict[str, Any]:
        last: dict[str, Any] = {"text": "", "error_code": int(ErrorCode.INTERNAL_ERROR)}
        async for chunk in self.open_stream(params, request_id=request_id):
            last = chunk
        return last


class ModelEngine(ServingEngine):
    """A model loaded in this process, served by the batch or the sequential engine."""

    def __init__(
        self,
        loaded: LoadedModel,
        model_names: list[str],
        conversation: Conversation,
        *,
        mode: EngineMode = "batch",
        max_batch_size: int = 32,
        max_queue: int = 256,
        stream_interval: int = 2,
        prefill_chunk: int = 512,
        embedding_batch_size: int = 8,
        fast_path: bool = True,
        prefix_cache_mb: int = 0,
        single_thread_below: int = 0,
        kv_cache_mb: int = 0,
        prefill_budget: int = 2048,
        gather_gap_ms: float = 0.0,
        gather_max_ms: float = 0.0,
    ) -> None:
        super().__init__(
            model_names,
            conversation,
            loaded.tokenizer,
            loaded.context_len,
            loaded.model.config.vocab_size,
            loaded.device,
            max_batch_size,
            max_queue,
        )
        self.loaded = loaded
        self.sampling_defaults = read_sampling_defaults(loaded.path) if loaded.path else {}
        self.mode = mode
        self.stream_interval = stream_interval
        self._scheduler: BatchScheduler | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running = 0
        self._waiting = 0
        self.embedder = Embedder(loaded, embedding_batch_size, max_queue)
        if mode == "batch":
            self._scheduler = BatchScheduler(
                loaded.model,
                max_batch_size,
                prefill_chunk,
                fast_path,
                prefix_cache_mb << 20,
                single_thread_below,
                kv_cache_mb << 20,
                prefill_budget,
                gather_gap=gather_gap_ms / 1000,
                gather_max=gather_max_ms / 1000,
            )
        else:
            self._executor = ThreadPoolExecutor(max_batch_size, thread_name_prefix="generate")
            self._slots = asyncio.Semaphore(max_batch_size)

    def details(self) -> dict[str, Any]:
        """The device and dtype chosen at start-up (``auto`` resolved), and the engine."""
        return {
            **super().details(),
            "device": self.loaded.device,
            "dtype": self.loaded.dtype.removeprefix("torch."),
            "engine": self.mode,
            "decode_path": self._scheduler.path if self._scheduler else "transformers",
        }

    @property
    def running(self) -> int:
        return self._scheduler.running if self._scheduler else self._running

    @property
    def waiting(self) -> int:
        return self._scheduler.waiting if self._scheduler else self._waiting

    def _stream(self, params: GenerateParams, token_events: bool) -> AsyncIterator[dict[str, Any]]:
        if self._scheduler is not None:
            return self._batched(params, token_events)
        return self._sequential(params, token_events)

    @property
    def in_flight(self) -> int:
        return self._scheduler.admitted if self._scheduler else self._running + self._waiting

    def _batched(self, params: GenerateParams, token_events: bool) -> AsyncIterator[dict[str, Any]]:
        """Count the request now, so it holds its place before anyone else is admitted; its
        prompt is tokenised in a thread (a long one takes seconds), then it joins the batch."""
        assert self._scheduler is not None
        self._scheduler.reserve()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()
        emit = _emitter(loop, queue)
        loop.run_in_executor(None, self._prepare, params, token_events, emit, cancelled)
        return self._read_batched(cancelled, queue)

    def _prepare(
        self,
        params: GenerateParams,
        token_events: bool,
        emit: Callable[[Any], None],
        cancelled: threading.Event,
    ) -> None:
        """In a thread: tokenise the prompt and hand the request to the scheduler."""
        assert self._scheduler is not None
        try:
            prepared = prepare_prompt(
                self.loaded.tokenizer,
                params.prompt,
                self.context_len,
                params.max_new_tokens,
                params.truncate,
            )
            decoder = SequenceDecoder(
                self.loaded.tokenizer,
                params,
                len(prepared.input_ids),
                self.conversation.stop_token_ids,
                self.stream_interval,
                token_events,
            )
            sampler = Sampler(params, self.loaded.model.device)
        except Exception as exc:  # reported to the client as an error chunk
            log.exception("event=prepare_failed")
            self._scheduler.unreserve()
            emit(error_chunk_for(exc))
            emit(END_OF_STREAM)
            return
        seq = Sequence(params, prepared.input_ids, sampler, decoder, emit, cancelled)
        self._scheduler.submit(seq)

    async def _read_batched(
        self, cancelled: threading.Event, queue: asyncio.Queue
    ) -> AsyncIterator[dict[str, Any]]:
        assert self._scheduler is not None
        ended = False
        try:
            while (item := await queue.get()) is not END_OF_STREAM:
                yield item
            ended = True
        finally:
            if not ended:
                self._scheduler.cancel(cancelled)

    def _run_sequential(
        self,
        params: GenerateParams,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue,
        cancel: threading.Event,
        token_events: bool,
    ) -> None:
        put = _emitter(loop, queue)
        try:
            for chunk in generate_stream(
                self.loaded.model,
                self.loaded.tokenizer,
                params,
                context_len=self.context_len,
                stream_interval=self.stream_interval,
                extra_stop_token_ids=self.conversation.stop_token_ids,
                cancel=cancel,
                token_events=token_events,
            ):
                put(chunk)
        except Exception as exc:  # reported to the client as an error chunk
            log.exception("event=generation_failed")
            put(error_chunk_for(exc))
        finally:
            put(END_OF_STREAM)

    async def _sequential(
        self, params: GenerateParams, token_events: bool
    ) -> AsyncIterator[dict[str, Any]]:
        assert self._executor is not None
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        future = loop.run_in_executor(
            self._executor, self._run_sequential, params, loop, queue, cancel, token_events
        )
        try:
            while (item := await queue.get()) is not END_OF_STREAM:
                yield item
        finally:
            cancel.set()
            # Keep the slot until the thread really stops using the model.
            await asyncio.shield(future)
            self._running -= 1
            self._slots.release()

    async def embed(self, inputs: list[EmbeddingInput]) -> Embeddings:
        return await self.embedder(inputs)

    def shutdown(self) -> None:
        self.embedder.shutdown()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class Embedder:
    """Embeddings of a loaded model, computed one request at a time in their own thread (the
    event loop and the generation scheduler keep running); at most ``max_queue`` requests wait,
    beyond that a request is refused at once (429)."""

    def __init__(self, loaded: LoadedModel, batch_size: int, max_queue: int) -> None:
        self.loaded = loaded
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.pending = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="embed")
        tokenizer = loaded.tokenizer
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _compute(self, inputs: list[EmbeddingInput]) -> Embeddings:
        vocab = int(getattr(self.loaded.model.config, "vocab_size", 0) or 2**31)
        ids = tokenize_inputs(self.loaded.tokenizer, inputs, self.loaded.context_len, vocab)
        return embed(self.loaded.model, ids, self._pad_id, self.batch_size)

    async def __call__(self, inputs: list[EmbeddingInput]) -> Embeddings:
        if self.pending >= self.max_queue + 1:
            raise EngineOverloaded(1, self.pending - 1, self.max_queue, RETRY_AFTER_SECONDS)
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._compute, inputs)
        except EngineError:
            raise
        except Exception as exc:  # reported as FastChat's internal error, the worker goes on
            log.exception("event=embedding_failed")
            raise EngineError(f"embedding failed: {exc!r}") from exc
        finally:
            self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class EmbeddingEngine(ServingEngine):
    """An encoder (a sentence-embedding model): it embeds, and refuses generation with a 400
    that says so, on every protocol."""

    def __init__(
        self,
        loaded: LoadedModel,
        model_names: list[str],
        conversation: Conversation,
        *,
        max_queue: int = 256,
        embedding_batch_size: int = 8,
    ) -> None:
        vocab = int(getattr(loaded.model.config, "vocab_size", 0) or 0)
        super().__init__(
            model_names,
            conversation,
            loaded.tokenizer,
            loaded.context_len,
            vocab,
            loaded.device,
            1,
            max_queue,
        )
        self.embedder = Embedder(loaded, embedding_batch_size, max_queue)

    @property
    def running(self) -> int:
        return min(self.embedder.pending, 1)

    @property
    def waiting(self) -> int:
        return max(self.embedder.pending - 1, 0)

    def _refusal(self) -> InvalidRequest:
        return InvalidRequest(
            "model",
            f"{self.model_names[0]} is an embedding model: it serves /worker_get_embeddings "
            "and /v1/embeddings, not text generation",
            ErrorCode.INVALID_MODEL,
        )

    def validate(self, params: GenerateParams) -> None:
        raise self._refusal()

    def open_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        raise self._refusal()

    async def embed(self, inputs: list[EmbeddingInput]) -> Embeddings:
        return await self.embedder(inputs)

    def shutdown(self) -> None:
        self.embedder.shutdown()
