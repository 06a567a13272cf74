"""Forwarding of worker-protocol calls from the controller to a chosen worker."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from shared.constants import ErrorCode
from shared.contracts import REQUEST_ID_HEADER
from shared.worker_protocol import ChunkSplitter, encode_chunk

log = logging.getLogger(__name__)


def error_chunk(message: str, code: ErrorCode) -> bytes:
    return encode_chunk({"text": message, "error_code": int(code)})


def request_id_headers(incoming: str | None) -> dict[str, str]:
    """Carry the caller's request id to the worker (or start one) so both logs share it."""
    return {REQUEST_ID_HEADER: incoming or f"req-{uuid.uuid4().hex[:16]}"}


async def open_worker_stream(
    client: httpx.AsyncClient,
    worker: str,
    body: dict[str, Any],
    timeout: float,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send the request and return the response with its body still unread."""
    request = client.build_request(
        "POST", f"{worker}/worker_generate_stream", json=body, timeout=timeout, headers=headers
    )
    return await client.send(request, stream=True)


async def relay_stream(response: httpx.Response, worker: str) -> AsyncIterator[bytes]:
    """Re-emit a worker's NUL-framed chunks; a failure mid-stream ends with an error chunk."""
    splitter = ChunkSplitter()
    try:
        async for data in response.aiter_bytes():
            for raw in splitter.feed(data):
                yield raw + b"\0"
        if rest := splitter.rest().strip():
            yield rest + b"\0"
    except httpx.TimeoutException as exc:
        log.warning("event=worker_timeout worker=%s error=%r", worker, exc)
        yield error_chunk(
            f"The worker {worker} timed out while generating ({exc!r}).",
            ErrorCode.CONTROLLER_WORKER_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        log.warning("event=worker_stream_broken worker=%s error=%r", worker, exc)
        yield error_chunk(
            f"The connection to worker {worker} broke while generating ({exc!r}).",
            ErrorCode.CONTROLLER_WORKER_TIMEOUT,
        )
    finally:
        await response.aclose()
