"""The controller's FastAPI app: FastChat's controller protocol for workers and clients, the
OpenAI-compatible API, and the REST APIs that queue dataset builds, fine-tuning jobs, merges,
evaluations and deployments. The routes live in their router modules; this file wires them up
with what they share: the worker registry, the Redis stores and the Celery app, and puts the
credential check (``auth.py``) and the body limits (``shared/http_limits.py``) in front of them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from services.controller.auth import Access, ControllerAuth, TrustedNetworks, access_of
from services.controller.datasets_api import router as datasets_router
from services.controller.deployments_api import router as deployments_router
from services.controller.evals_api import router as evals_router
from services.controller.jobs_api import document_request_schema
from services.controller.jobs_api import router as jobs_router
from services.controller.merges_api import router as merges_router
from services.controller.openai_api import install_openai_api
from services.controller.openai_service import OpenAIService
from services.controller.records import Backend
from services.controller.registry import WorkerRegistry
from services.controller.worker_protocol_api import router as worker_protocol_router
from services.controller.workers import Controller
from shared.auth import Credentials, bearer_header
from shared.celery_app import make_celery
from shared.http_errors import install_error_handlers
from shared.http_limits import BodyLimits
from shared.redis_client import async_redis
from shared.redis_keys import RedisKeys
from shared.settings import AuthSettings, CommonSettings, ControllerSettings
from shared.stores import Stores

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _lifespan(common: CommonSettings, settings: ControllerSettings, worker_token: str) -> Lifespan:
    """Builds, once per app, what the routes reach through ``app.state``: ``backend`` (the
    Redis stores and Celery), ``controller`` (worker registry and client), ``openai``. The
    client calls workers with the worker token."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stores = Stores.connect(common)
        app.state.backend = Backend(stores, common, make_celery("controller", common))
        redis = async_redis(common.redis_url, common.redis_max_connections, common.redis_pool_wait)
        keys = RedisKeys(common.redis_key_prefix)
        registry = WorkerRegistry(
            redis, keys, settings.heart_beat_expiration, settings.routing_refresh
        )
        timeout = httpx.Timeout(
            settings.worker_api_timeout, connect=settings.worker_connect_timeout
        )
        headers = bearer_header(worker_token)
        # No cap on connections in use: httpx's default (100) made request 101 wait for a free
        # connection, however many workers there were to take it.
        limits = httpx.Limits(
            max_connections=None,
            max_keepalive_connections=settings.worker_keepalive_connections,
            keepalive_expiry=settings.worker_keepalive_expiry,
        )
        try:
            async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits) as client:
                app.state.controller = Controller(registry, client, settings)
                app.state.openai = OpenAIService.create(registry, redis, keys, client, settings)
                log.info(
                    "event=controller_started redis=%s prefix=%s dispatch=%s",
                    common.redis_url,
                    common.redis_key_prefix,
                    settings.dispatch_method,
                )
                yield
        finally:
            await registry.aclose()
            await redis.aclose()
            stores.close()

    return lifespan


def create_app(
    common: CommonSettings | None = None,
    settings: ControllerSettings | None = None,
    auth: AuthSettings | None = None,
) -> FastAPI:
    """The app. Without keys (and without ALLOW_UNAUTHENTICATED) every route but the health
    checks refuses; ``__main__`` refuses to start so instead."""
    common = common or CommonSettings()
    settings = settings or ControllerSettings()
    auth = auth or AuthSettings()
    lifespan = _lifespan(common, settings, auth.worker_token)
    app = FastAPI(title="camel-chat controller", lifespan=lifespan)
    install_error_handlers(app)
    # Before the OpenAI routes: their GET /v1/models/{model:path} would swallow .../deploy.
    app.include_router(deployments_router)
    install_openai_api(app)
    for router in (datasets_router, jobs_router, merges_router, evals_router):
        app.include_router(router)
    app.include_router(worker_protocol_router)
    # The last added runs first: credentials are checked before any body is read.
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_body_bytes,
        path_limits={"/v1/datasets": settings.max_upload_bytes},
    )
    _document_credentials(app, auth.public_metrics)
    app.add_middleware(
        ControllerAuth,
        credentials=Credentials.from_settings(auth),
        trusted=TrustedNetworks.parse(auth.trusted_worker_networks),
        public_metrics=auth.public_metrics,
    )
    return app


def _document_credentials(app: FastAPI, public_metrics: bool) -> None:
    """Say in the OpenAPI document that every operation but the open ones takes a Bearer
    credential (``auth.py`` decides which)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            document["security"] = [{"bearer": []}]
            document_request_schema(document)
            for path, operations in document["paths"].items():
                if access_of(path, public_metrics) is Access.OPEN:
                    for operation in operations.values():
                        operation["security"] = []
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
