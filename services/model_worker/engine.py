"""The serving core of a worker: one loaded model, a concurrency limit, and generation that runs
in threads so the event loop keeps answering status calls and heartbeats."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import torch

from services.model_worker.generation import generate_stream
from services.model_worker.loader import LoadedModel
from shared.constants import ErrorCode
from shared.conversation import Conversation
from shared.http_errors import APIError
from shared.schemas import GenerateParams, WorkerStatus

log = logging.getLogger(__name__)

_END = object()


class ConcurrencyLimiter:
    """At most ``limit`` generations at once; the rest wait. Reports FastChat's queue length."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)
        self.running = 0
        self.waiting = 0

    @property
    def queue_length(self) -> int:
        return self.running + self.waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._semaphore.release()


def error_chunk_for(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, torch.OutOfMemoryError):
        return {"text": f"Out of memory while generating: {exc}", "error_code": 50002}
    return {
        "text": f"Internal error while generating: {type(exc).__name__}: {exc}",
        "error_code": int(ErrorCode.INTERNAL_ERROR),
    }


class ModelEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        model_names: list[str],
        conversation: Conversation,
        limit_concurrency: int = 5,
        stream_interval: int = 2,
    ) -> None:
        self.loaded = loaded
        self.model_names = model_names
        self.conversation = conversation
        self.stream_interval = stream_interval
        self.limiter = ConcurrencyLimiter(limit_concurrency)
        self._executor = ThreadPoolExecutor(
            max_workers=limit_concurrency, thread_name_prefix="generate"
        )

    @property
    def context_len(self) -> int:
        return self.loaded.context_len

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            model_names=self.model_names, speed=1.0, queue_length=self.limiter.queue_length
        )

    def validate(self, params: GenerateParams) -> None:
        """Checks that need the model; raise APIError (400) naming the field."""
        if not params.prompt:
            raise APIError(400, "prompt: must not be empty", param="prompt")
        if params.max_new_tokens >= self.context_len:
            raise APIError(
                400,
                f"max_new_tokens: {params.max_new_tokens} leaves no room for the prompt in the "
                f"model's context of {self.context_len} tokens",
                ErrorCode.PARAM_OUT_OF_RANGE,
                "max_new_tokens",
            )
        vocab = self.loaded.model.config.vocab_size
        bad = [i for i in params.stop_token_ids or [] if i >= vocab]
        if bad:
            raise APIError(
                400,
                f"stop_token_ids: {bad} are outside the vocabulary of {vocab} tokens",
                ErrorCode.PARAM_OUT_OF_RANGE,
                "stop_token_ids",
            )

    def count_tokens(self, prompt: str) -> int:
        return len(self.loaded.tokenizer(prompt).input_ids)

    def _run(
        self,
        params: GenerateParams,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue,
        cancel: threading.Event,
    ) -> None:
        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            for chunk in generate_stream(
                self.loaded.model,
                self.loaded.tokenizer,
                params,
                context_len=self.context_len,
                stream_interval=self.stream_interval,
                extra_stop_token_ids=self.conversation.stop_token_ids,
                cancel=cancel,
            ):
                put(chunk)
        except Exception as exc:  # reported to the client as an error chunk
            log.exception("event=generation_failed")
            put(error_chunk_for(exc))
        finally:
            put(_END)

    async def stream(self, params: GenerateParams) -> AsyncIterator[dict[str, Any]]:
        """Snapshots of one generation; waits for a free slot first.

        Closing the iterator early (client went away) stops the generation at its next token.
        """
        async with self.limiter.slot():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue = asyncio.Queue()
            cancel = threading.Event()
            future = loop.run_in_executor(self._executor, self._run, params, loop, queue, cancel)
            try:
                while (item := await queue.get()) is not _END:
                    yield item
            finally:
                cancel.set()
                # Keep the slot until the thread really stops using the model.
                await asyncio.shield(future)

    async def generate(self, params: GenerateParams) -> dict[str, Any]:
        last: dict[str, Any] = {"text": "", "error_code": int(ErrorCode.INTERNAL_ERROR)}
        async for chunk in self.stream(params):
            last = chunk
        return last

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
