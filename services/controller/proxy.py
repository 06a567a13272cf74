"""Forwarding of worker-protocol calls from the controller to a worker serving the model, with
failover: a call that gets no usable answer before its first chunk goes to another worker (see
``failover.py``). What comes back is an ``Answer``: the worker's own (relayed as it is), or the
controller's error in FastChat's shape."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from services.controller.failover import (
    is_retryable_error_code,
    is_retryable_status,
    is_retryable_transport_error,
    send_streaming,
)
from services.controller.workers import Controller
from shared.constants import ErrorCode
from shared.contracts import REQUEST_ID_HEADER
from shared.worker_protocol import ChunkSplitter, encode_chunk

log = logging.getLogger(__name__)

STREAM_MEDIA_TYPE = "application/octet-stream"


def error_chunk(message: str, code: ErrorCode) -> bytes:
    return encode_chunk({"text": message, "error_code": int(code)})


def request_id_headers(incoming: str | None) -> dict[str, str]:
    """Carry the caller's request id to the worker (or start one) so both logs share it."""
    return {REQUEST_ID_HEADER: incoming or f"req-{uuid.uuid4().hex[:16]}"}


@dataclass
class Answer:
    """What the route sends back: a body (or a stream, already past its first chunk)."""

    status: int
    content: bytes = b""
    media_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None
    # A failure another worker might not have: worth trying there.
    retry: bool = False

    @classmethod
    def chunk(cls, message: str, code: ErrorCode, retry: bool = True) -> Answer:
        """One final error chunk, as the streaming route reports every failure."""
        return cls(200, error_chunk(message, code), STREAM_MEDIA_TYPE, retry=retry)

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        code: ErrorCode,
        param: str | None = None,
        retry: bool = True,
    ) -> Answer:
        body = {"text": message, "error_code": int(code), "param": param}
        return cls(status, json.dumps(body).encode(), retry=retry)

    @classmethod
    def of(cls, response: httpx.Response, content: bytes) -> Answer:
        """The worker's own answer, relayed as it is."""
        media_type = response.headers.get("content-type", "application/json")
        retry = is_retryable_status(response.status_code)
        return cls(response.status_code, content, media_type, retry=retry)


class WorkerStream:
    """A worker's ``/worker_generate_stream`` answer, read up to its first whole chunk."""

    def __init__(self, worker: str, response: httpx.Response) -> None:
        self.worker = worker
        self._response = response
        self._pieces = response.aiter_bytes()
        self._splitter = ChunkSplitter()
        self._pending: list[bytes] = []

    async def first_chunk(self) -> dict[str, Any] | None:
        """The first chunk; None when the stream ends or breaks before one (then it is closed).
        A worker silent for the whole read timeout raises ``httpx.TimeoutException``."""
        try:
            while not self._pending:
                data = await anext(self._pieces, None)
                if data is None:
                    if rest := self._splitter.rest().strip():
                        self._pending.append(rest)
                    break
                self._pending.extend(self._splitter.feed(data))
        except httpx.TimeoutException:
            await self._response.aclose()
            raise
        except httpx.HTTPError as exc:
            log.warning("event=worker_stream_broken worker=%s error=%r", self.worker, exc)
        if not self._pending:
            await self._response.aclose()
            return None
        try:
            first = json.loads(self._pending[0])
        except ValueError:
            return {}  # not ours to judge: relayed as it came
        return first if isinstance(first, dict) else {}

    def head(self) -> bytes:
        """The first chunk as it came, NUL-framed."""
        return self._pending[0] + b"\0"

    async def relay(self) -> AsyncIterator[bytes]:
        """Every chunk, NUL-framed, from the first; a failure later ends with an error chunk."""
        try:
            for raw in self._pending:
                yield raw + b"\0"
            async for data in self._pieces:
                for raw in self._splitter.feed(data):
                    yield raw + b"\0"
            if rest := self._splitter.rest().strip():
                yield rest + b"\0"
        except httpx.TimeoutException as exc:
            log.warning("event=worker_timeout worker=%s error=%r", self.worker, exc)
            yield error_chunk(
                f"The worker {self.worker} timed out while generating ({exc!r}).",
                ErrorCode.CONTROLLER_WORKER_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            log.warning("event=worker_stream_broken worker=%s error=%r", self.worker, exc)
            yield error_chunk(
                f"The connection to worker {self.worker} broke while generating ({exc!r}).",
                ErrorCode.CONTROLLER_WORKER_TIMEOUT,
            )
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()


async def _open_stream(
    c: Controller, worker: str, payload: dict[str, Any], headers: dict[str, str]
) -> WorkerStream | Answer:
    """One try: the stream past its first chunk, or the failure as an Answer."""
    request = c.client.build_request(
        "POST", f"{worker}/worker_generate_stream", json=payload, headers=headers
    )
    try:
        response = await send_streaming(c.client, request, c.settings.worker_response_timeout)
    except httpx.HTTPError as exc:
        await c.failover.failed(worker, exc)
        return Answer.chunk(
            f"The worker {worker} for model '{payload.get('model')}' could not be reached "
            f"({exc!r}).",
            ErrorCode.CONTROLLER_WORKER_TIMEOUT,
            retry=is_retryable_transport_error(exc),
        )
    if response.status_code != 200:
        content = await response.aread()
        await response.aclose()
        return Answer.of(response, content)
    stream = WorkerStream(worker, response)
    try:
        first = await stream.first_chunk()
    except httpx.TimeoutException as exc:  # slow, not gone: not tried elsewhere
        message = f"The worker {worker} timed out before any output ({exc!r})."
        return Answer.chunk(message, ErrorCode.CONTROLLER_WORKER_TIMEOUT, retry=False)
    if first is None:
        return Answer.chunk(
            f"The worker {worker} ended its stream before any output.",
            ErrorCode.CONTROLLER_WORKER_TIMEOUT,
        )
    if is_retryable_error_code(int(first.get("error_code") or 0)):
        await stream.aclose()
        return Answer(200, stream.head(), STREAM_MEDIA_TYPE, retry=True)
    return stream


async def stream_generation(
    c: Controller, model: str, payload: dict[str, Any], headers: dict[str, str]
) -> Answer:
    """``/worker_generate_stream`` on a worker of ``model``, tried on up to ``1 + retries``
    workers until one gives a first chunk; the last failure when none does."""
    tried: list[str] = []
    last = Answer.chunk(f"No worker is serving model '{model}'.", ErrorCode.CONTROLLER_NO_WORKER)
    while (worker := await c.failover.next_worker(model, tried)) is not None:
        outcome = await _open_stream(c, worker, payload, headers)
        if isinstance(outcome, WorkerStream):
            return Answer(200, media_type=STREAM_MEDIA_TYPE, stream=outcome.relay())
        last = outcome
        if not outcome.retry:
            break
    return last


async def forward(
    c: Controller, path: str, model: str, payload: dict[str, Any], headers: dict[str, str]
) -> Answer:
    """A non-streaming call on a worker of ``model``: retried elsewhere when the worker cannot
    be reached, drops the connection, or answers 429/5xx; 404 when no worker serves ``model``."""
    tried: list[str] = []
    last: Answer | None = None
    while (worker := await c.failover.next_worker(model, tried)) is not None:
        try:
            response = await c.client.post(f"{worker}{path}", json=payload, headers=headers)
            last = Answer.of(response, response.content)
        except httpx.HTTPError as exc:
            await c.failover.failed(worker, exc)
            last = _no_answer(worker, exc)
        if not last.retry:
            break
    if last is None:
        message = f"No worker is serving model '{model}'."
        return Answer.error(404, message, ErrorCode.CONTROLLER_NO_WORKER, "model")
    return last


def _no_answer(worker: str, exc: httpx.HTTPError) -> Answer:
    code = ErrorCode.CONTROLLER_WORKER_TIMEOUT
    if is_retryable_transport_error(exc):
        return Answer.error(502, f"Worker {worker} could not be reached ({exc!r}).", code)
    return Answer.error(504, f"Worker {worker} timed out ({exc!r}).", code, retry=False)
