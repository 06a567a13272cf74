"""Streaming chats through the controller while one of the model's workers is SIGKILLed: which
requests failed, and whether they had their first token by then. Shared by the light test in
``tests/controller`` and the heavy one in ``tests/faults``."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from tests.support import ServiceProcess


@dataclass
class Stream:
    started: float
    status: int | None = None
    first_at: float | None = None  # when the first chunk arrived
    finished: bool = False  # reached [DONE] without an error event
    error: str | None = None

    @property
    def failed_before_first_token(self) -> bool:
        return not self.finished and self.first_at is None


@dataclass
class Outcome:
    killed_at: float
    streams: list[Stream] = field(default_factory=list)

    @property
    def failed(self) -> list[Stream]:
        return [s for s in self.streams if not s.finished]

    @property
    def failed_before_first_token(self) -> list[Stream]:
        return [s for s in self.streams if s.failed_before_first_token]

    def summary(self) -> str:
        cut = [s for s in self.failed if s.first_at is not None]
        return (
            f"{len(self.streams)} streams, {len(self.failed)} failed: {len(cut)} cut mid-stream, "
            f"{len(self.failed_before_first_token)} before their first token "
            f"({[s.error for s in self.failed_before_first_token]})"
        )


async def _chat(client: httpx.AsyncClient, url: str, model: str, stream: Stream) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 120,
        "stream": True,
    }
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            stream.status = response.status_code
            if response.status_code != 200:
                stream.error = (await response.aread()).decode(errors="replace")[:300]
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if stream.first_at is None:
                    stream.first_at = time.monotonic()
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    stream.finished = stream.error is None
                elif "error" in json.loads(data):
                    stream.error = data[:300]
    except httpx.HTTPError as exc:
        stream.error = repr(exc)


async def _run(
    url: str, model: str, victim: ServiceProcess, streams: int, spread: float, kill_after: float
) -> Outcome:
    outcome = Outcome(killed_at=0.0)
    start = time.monotonic()

    async def killer() -> None:
        await asyncio.sleep(kill_after)
        victim.kill()
        outcome.killed_at = time.monotonic()

    async with httpx.AsyncClient(timeout=120) as client:
        tasks = [asyncio.create_task(killer())]
        for i in range(streams):
            await asyncio.sleep(max(0.0, start + i * spread / streams - time.monotonic()))
            stream = Stream(started=time.monotonic())
            outcome.streams.append(stream)
            tasks.append(asyncio.create_task(_chat(client, url, model, stream)))
        await asyncio.gather(*tasks)
    return outcome


def kill_under_load(
    url: str,
    model: str,
    victim: ServiceProcess,
    streams: int,
    spread: float = 3.0,
    kill_after: float = 1.0,
) -> Outcome:
    """``streams`` chats started evenly over ``spread`` seconds; ``victim`` SIGKILLed after
    ``kill_after`` seconds."""
    return asyncio.run(_run(url, model, victim, streams, spread, kill_after))
