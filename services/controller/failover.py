"""Another worker for a request whose worker failed before its first token.

A request that has sent nothing to its client yet can go to another worker of its model when its
worker refuses the connection or does not accept it in time (the worker leaves routing at once:
it is dead, or its next heartbeat registers it again), answers 5xx or 429, or its stream ends or
breaks before the first chunk. The request tries at most ``1 + retries`` workers, each once.
Requests already streaming are not moved: their client has output that another worker would not
continue.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from services.controller.registry import DispatchMethod, WorkerRegistry

log = logging.getLogger(__name__)


class NoResponse(httpx.NetworkError):
    """The worker took the request but did not start answering in time: typically its host went
    away behind a kept-alive connection, where no connect (and so no connect timeout) happens."""


async def send_streaming(
    client: httpx.AsyncClient, request: httpx.Request, response_timeout: float
) -> httpx.Response:
    """``client.send(request, stream=True)``, waiting at most ``response_timeout`` seconds for the
    response to start (a worker answers a generation request at once, before any token)."""
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the send as another task,
        # one more trip through the event loop for every request of a burst.
        async with asyncio.timeout(response_timeout):
            return await client.send(request, stream=True)
    except TimeoutError:
        message = f"no response within {response_timeout:g} s"
        raise NoResponse(message, request=request) from None


def is_connect_failure(exc: BaseException) -> bool:
    """The worker could not be reached at all: refused, unresolvable, or no answer in time."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def is_retryable_transport_error(exc: BaseException) -> bool:
    """No answer, but another worker may give one: no connection, or the connection dropped
    before any response. A read timeout is not: the worker is slow, not gone."""
    return isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout
    )


def is_retryable_status(status: int) -> bool:
    """An answer worth trying elsewhere: the worker is overloaded (429) or failing (5xx)."""
    return status == 429 or status >= 500


def is_retryable_error_code(error_code: int) -> bool:
    """A FastChat error code (in a first chunk) worth trying elsewhere: overload or server side."""
    return error_code // 100 == 429 or error_code >= 50000


class Failover:
    """Which worker a request tries next, and what a worker's failure does to the registry."""

    def __init__(self, registry: WorkerRegistry, method: DispatchMethod, retries: int) -> None:
        self.registry = registry
        self.method = method
        self.retries = retries

    async def next_worker(self, model: str, tried: list[str]) -> str | None:
        """A worker of ``model`` not in ``tried`` (which it joins), while tries are left."""
        if len(tried) > self.retries:
            return None
        worker = await self.registry.pick_worker(model, self.method, exclude=tried)
        if worker is not None:
            if tried:
                log.info("event=failover model=%s from=%s to=%s", model, tried[-1], worker)
            tried.append(worker)
        return worker

    async def failed(self, worker: str, exc: BaseException) -> None:
        """A call to ``worker`` got no answer; one that could not connect leaves routing."""
        if is_connect_failure(exc):
            log.warning("event=worker_unreachable worker=%s error=%r removed=true", worker, exc)
            await self.registry.remove(worker)
