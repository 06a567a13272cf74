"""Framing of the worker stream (JSON objects each followed by one NUL byte) and small clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

DELIMITER = b"\0"

# FastChat clients identify themselves with this header; kept for log compatibility.
CLIENT_HEADERS = {"User-Agent": "camel-chat client"}


def encode_chunk(chunk: dict[str, Any]) -> bytes:
    return json.dumps(chunk, ensure_ascii=False).encode() + DELIMITER


class ChunkSplitter:
    """Reassembles NUL-delimited JSON objects from arbitrary byte pieces."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        *complete, self._buffer = self._buffer.split(DELIMITER)
        return [piece for piece in complete if piece]

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def iter_chunks(pieces: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    splitter = ChunkSplitter()
    for data in pieces:
        for raw in splitter.feed(data):
            yield json.loads(raw)
    if rest := splitter.rest().strip():
        yield json.loads(rest)


async def aiter_chunks(pieces: AsyncIterable[bytes]) -> AsyncIterator[dict[str, Any]]:
    splitter = ChunkSplitter()
    async for data in pieces:
        for raw in splitter.feed(data):
            yield json.loads(raw)
    if rest := splitter.rest().strip():
        yield json.loads(rest)


class ProtocolError(RuntimeError):
    """A worker or controller answered with an error body."""

    def __init__(self, message: str, error_code: int, status_code: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status_code = status_code


def error_from_response(response: httpx.Response) -> ProtocolError:
    try:
        body = response.json()
        message = body.get("text") or body.get("message") or response.text
        code = int(body.get("error_code", 0))
    except (ValueError, AttributeError):
        message, code = response.text, 0
    return ProtocolError(message, code, response.status_code)


def stream_generate(
    client: httpx.Client, url: str, params: dict[str, Any], timeout: float = 100.0
) -> Iterator[dict[str, Any]]:
    """POST to a ``/worker_generate_stream`` URL and yield its snapshots.

    Raises ProtocolError for an HTTP error status; in-stream errors are yielded as chunks
    (their ``error_code`` is non-zero) so the caller can show them.
    """
    with client.stream(
        "POST", url, json=params, headers=CLIENT_HEADERS, timeout=timeout
    ) as response:
        if response.status_code != 200:
            response.read()
            raise error_from_response(response)
        yield from iter_chunks(response.iter_bytes())
