"""The pool's HTTP side: ``GET /health`` (what it runs); the supervision loop runs in its
lifespan. Everything but ``/health`` needs a credential (a user's key or the worker token)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from services.model_pool.supervisor import ModelPool
from shared.auth import Credentials
from shared.credential_guard import CredentialGuard
from shared.http_limits import BodyLimits
from shared.settings import AuthSettings

log = logging.getLogger(__name__)


async def supervise(pool: ModelPool, stopping: asyncio.Event) -> None:
    """A pass every ``poll_interval`` seconds, off the event loop, until ``stopping`` is set."""
    while not stopping.is_set():
        try:
            await asyncio.to_thread(pool.step)
        except Exception:  # Redis away for a moment: try again next pass
            log.exception("event=pool_step_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pool.settings.poll_interval)


def create_app(pool: ModelPool, auth: AuthSettings, max_body_bytes: int) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stopping = asyncio.Event()
        task = asyncio.create_task(supervise(pool, stopping))
        log.info("event=pool_started pool=%s ports=%s", pool.name, pool.settings.port_range)
        try:
            yield
        finally:
            stopping.set()
            await task
            await asyncio.to_thread(pool.shutdown)

    app = FastAPI(title="camel-chat model pool", lifespan=lifespan)
    app.add_middleware(BodyLimits, max_bytes=max_body_bytes)
    app.add_middleware(CredentialGuard, credentials=Credentials.from_settings(auth))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **pool.describe()}

    return app
