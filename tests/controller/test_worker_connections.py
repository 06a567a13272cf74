"""The controller holds as many streams open to workers as clients ask for: its HTTP client caps
neither at httpx's default of 100 connections nor at any other number of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import httpx
from fastapi.responses import Response, StreamingResponse

from shared.worker_protocol import encode_chunk
from tests.controller.stand_in import StandInWorker

STREAMS = 120  # more than httpx's default pool of 100


class Gate:
    """Holds every generation open until ``STREAMS`` are open at once (or a deadline passes),
    and remembers the most that were."""

    def __init__(self, deadline_s: float = 20.0) -> None:
        self.open = 0
        self.most = 0
        self.deadline = time.monotonic() + deadline_s
        self._lock = threading.Lock()

    def generate(self) -> Response:
        with self._lock:
            self.open += 1
            self.most = max(self.most, self.open)

        async def body() -> AsyncIterator[bytes]:
            while self.most < STREAMS and time.monotonic() < self.deadline:
                await asyncio.sleep(0.05)
            with self._lock:
                self.open -= 1
            chunk = {
                "text": "ok",
                "error_code": 0,
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                "finish_reason": "stop",
            }
            yield encode_chunk(chunk)

        return StreamingResponse(body(), media_type="application/octet-stream")


async def chat_streams(url: str, n: int) -> list[int]:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        "stream": True,
    }
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one() -> int:
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as answer:
                text = (await answer.aread()).decode()
                return answer.status_code if '"content":"ok"' in text else -1

        return await asyncio.gather(*(one() for _ in range(n)))


def test_more_streams_than_httpx_pools_reach_the_worker_at_once(
    controller: Callable[..., str],
) -> None:
    url = controller(env={"CONTROLLER_WORKER_RESPONSE_TIMEOUT": "30"})
    gate = Gate()
    worker = StandInWorker(["m"], gate.generate).start()
    try:
        worker.join(url)
        statuses = asyncio.run(chat_streams(url, STREAMS))
        assert gate.most == STREAMS
        assert statuses == [200] * STREAMS
    finally:
        worker.stop()
