"""HTTP routes of the controller (FastChat controller protocol, spec §4.3). Routes stay thin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError

from services.controller.auth import api_key_guard, parse_api_keys
from services.controller.datasets_api import router as datasets_router
from services.controller.deployments_api import router as deployments_router
from services.controller.evals_api import router as evals_router
from services.controller.jobs_api import router as jobs_router
from services.controller.merges_api import router as merges_router
from services.controller.openai_api import install_openai_api
from services.controller.openai_service import OpenAIService
from services.controller.proxy import (
    REQUEST_ID_HEADER,
    error_chunk,
    open_worker_stream,
    relay_stream,
    request_id_headers,
)
from services.controller.registry import DispatchMethod, WorkerRegistry
from shared.celery_app import make_celery
from shared.constants import ErrorCode
from shared.datasets import DATASET_KIND
from shared.deployments import DEPLOYMENT_KIND
from shared.evals import EVAL_KIND, ResultsBoard
from shared.http_errors import APIError, error_response, install_error_handlers
from shared.job_records import EventLog, RecordStore
from shared.merging import MERGE_KIND
from shared.redis_client import async_redis, sync_redis
from shared.redis_keys import RedisKeys
from shared.schemas import (
    HeartbeatRequest,
    HeartbeatResponse,
    ModelRequest,
    RegisterWorkerRequest,
    UnregisterWorkerRequest,
    WorkerStatus,
)
from shared.settings import CommonSettings, ControllerSettings
from shared.training import JOB_KIND

log = logging.getLogger(__name__)


class Controller:
    """What the routes need: the registry, an HTTP client for workers, and the settings."""

    def __init__(
        self, registry: WorkerRegistry, client: httpx.AsyncClient, settings: ControllerSettings
    ) -> None:
        self.registry = registry
        self.client = client
        self.settings = settings

    @property
    def dispatch_method(self) -> DispatchMethod:
        return self.settings.dispatch_method

    async def fetch_status(self, worker: str) -> WorkerStatus | None:
        try:
            response = await self.client.post(
                f"{worker}/worker_get_status", timeout=self.settings.worker_status_timeout
            )
            response.raise_for_status()
            return WorkerStatus.model_validate(response.json())
        except (httpx.HTTPError, ValidationError, ValueError) as exc:
            log.warning("event=status_poll_failed worker=%s error=%r", worker, exc)
            return None

    async def worker_for(self, model: str) -> str:
        address = await self.registry.pick_worker(model, self.dispatch_method)
        if address is None:
            raise APIError(
                404,
                f"No worker is serving model '{model}'.",
                ErrorCode.CONTROLLER_NO_WORKER,
                "model",
            )
        return address


def create_app(
    common: CommonSettings | None = None, settings: ControllerSettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or ControllerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.common = common
        app.state.datasets = RecordStore(
            sync_redis(common.redis_url), RedisKeys(common.redis_key_prefix), DATASET_KIND
        )
        jobs_redis = sync_redis(common.redis_url)
        app.state.jobs = RecordStore(jobs_redis, RedisKeys(common.redis_key_prefix), JOB_KIND)
        app.state.job_events = EventLog(jobs_redis, RedisKeys(common.redis_key_prefix), JOB_KIND)
        app.state.merges = RecordStore(jobs_redis, RedisKeys(common.redis_key_prefix), MERGE_KIND)
        app.state.evals = RecordStore(jobs_redis, RedisKeys(common.redis_key_prefix), EVAL_KIND)
        app.state.eval_results = ResultsBoard(jobs_redis, RedisKeys(common.redis_key_prefix))
        app.state.deployments = RecordStore(
            jobs_redis, RedisKeys(common.redis_key_prefix), DEPLOYMENT_KIND
        )
        app.state.celery = make_celery("controller", common)
        redis = async_redis(common.redis_url)
        registry = WorkerRegistry(
            redis, RedisKeys(common.redis_key_prefix), settings.heart_beat_expiration
        )
        timeout = httpx.Timeout(settings.worker_api_timeout, connect=5.0)
        async with httpx.AsyncClient(timeout=timeout) as client:
            app.state.controller = Controller(registry, client, settings)
            app.state.openai = OpenAIService.create(
                registry, redis, RedisKeys(common.redis_key_prefix), client, settings
            )
            log.info(
                "event=controller_started redis=%s prefix=%s dispatch=%s",
                common.redis_url,
                common.redis_key_prefix,
                settings.dispatch_method,
            )
            yield
        await redis.aclose()

    app = FastAPI(title="camel-chat controller", lifespan=lifespan)
    install_error_handlers(app)
    api_keys = api_key_guard(parse_api_keys(settings.api_keys))
    # Before the OpenAI routes: their GET /v1/models/{model:path} would swallow .../deploy.
    app.include_router(deployments_router, dependencies=[Depends(api_keys)])
    install_openai_api(app, settings)
    app.include_router(datasets_router, dependencies=[Depends(api_keys)])
    app.include_router(jobs_router, dependencies=[Depends(api_keys)])
    app.include_router(merges_router, dependencies=[Depends(api_keys)])
    app.include_router(evals_router, dependencies=[Depends(api_keys)])

    def ctl(request: Request) -> Controller:
        return request.app.state.controller

    @app.post("/register_worker")
    async def register_worker(body: RegisterWorkerRequest, request: Request) -> None:
        c = ctl(request)
        status = body.worker_status or await c.fetch_status(body.worker_name)
        if status is None:
            raise APIError(
                502,
                f"Could not read the status of worker {body.worker_name}; not registered.",
                ErrorCode.CONTROLLER_WORKER_TIMEOUT,
                "worker_name",
            )
        await c.registry.register(body.worker_name, status, body.check_heart_beat, body.multimodal)

    @app.post("/receive_heart_beat")
    async def receive_heart_beat(body: HeartbeatRequest, request: Request) -> HeartbeatResponse:
        exist = await ctl(request).registry.heartbeat(body.worker_name, body.queue_length)
        return HeartbeatResponse(exist=exist)

    @app.post("/unregister_worker")
    async def unregister_worker(body: UnregisterWorkerRequest, request: Request) -> None:
        """Extension of the FastChat protocol: a worker that stops cleanly leaves at once
        instead of staying routable until its heartbeat expires."""
        await ctl(request).registry.remove(body.worker_name)

    @app.post("/refresh_all_workers")
    async def refresh_all_workers(request: Request) -> None:
        c = ctl(request)
        workers = await c.registry.workers()
        statuses = await asyncio.gather(*(c.fetch_status(name) for name in workers))
        for (name, info), status in zip(workers.items(), statuses, strict=True):
            if status is None:
                await c.registry.remove(name)
            else:
                await c.registry.register(name, status, info.check_heart_beat, info.multimodal)

    @app.post("/list_models")
    async def list_models(request: Request) -> dict[str, list[str]]:
        return {"models": await ctl(request).registry.models()}

    @app.post("/list_language_models")
    async def list_language_models(request: Request) -> dict[str, list[str]]:
        workers = (await ctl(request).registry.workers()).values()
        return {"models": sorted({m for w in workers if not w.multimodal for m in w.model_names})}

    @app.post("/list_multimodal_models")
    async def list_multimodal_models(request: Request) -> dict[str, list[str]]:
        workers = (await ctl(request).registry.workers()).values()
        return {"models": sorted({m for w in workers if w.multimodal for m in w.model_names})}

    @app.get("/list_workers")
    async def list_workers(request: Request) -> dict[str, Any]:
        workers = await ctl(request).registry.workers()
        return {"workers": [w.model_dump() for w in workers.values()]}

    @app.post("/get_worker_address")
    async def get_worker_address(body: ModelRequest, request: Request) -> dict[str, str]:
        # FastChat clients test for "" when no worker serves the model; keep that contract.
        address = await ctl(request).registry.pick_worker(body.model, settings.dispatch_method)
        return {"address": address or ""}

    @app.post("/worker_get_status")
    async def worker_get_status(request: Request) -> WorkerStatus:
        workers = (await ctl(request).registry.workers()).values()
        return WorkerStatus(
            model_names=sorted({m for w in workers for m in w.model_names}),
            speed=sum(w.speed for w in workers),
            queue_length=sum(w.queue_length for w in workers),
        )

    @app.post("/worker_generate_stream")
    async def worker_generate_stream(body: ModelRequest, request: Request) -> Any:
        c = ctl(request)
        payload = await request.json()
        worker = await c.registry.pick_worker(body.model, settings.dispatch_method)
        if worker is None:
            chunk = error_chunk(
                f"No worker is serving model '{body.model}'.", ErrorCode.CONTROLLER_NO_WORKER
            )
            return StreamingResponse(iter([chunk]), media_type="application/octet-stream")
        try:
            response = await open_worker_stream(
                c.client,
                worker,
                payload,
                settings.worker_api_timeout,
                request_id_headers(request.headers.get(REQUEST_ID_HEADER)),
            )
        except httpx.HTTPError as exc:
            log.warning("event=worker_unreachable worker=%s error=%r", worker, exc)
            chunk = error_chunk(
                f"The worker {worker} for model '{body.model}' could not be reached ({exc!r}).",
                ErrorCode.CONTROLLER_WORKER_TIMEOUT,
            )
            return StreamingResponse(iter([chunk]), media_type="application/octet-stream")
        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            return _passthrough(response, content)
        return StreamingResponse(
            relay_stream(response, worker), media_type="application/octet-stream"
        )

    async def forward(request: Request, path: str) -> Any:
        """Forward a non-streaming call to a worker serving ``model``; 404 JSON if none."""
        c = ctl(request)
        payload = await request.json()
        model = ModelRequest.model_validate(payload).model
        worker = await c.worker_for(model)
        try:
            response = await c.client.post(
                f"{worker}{path}",
                json=payload,
                headers=request_id_headers(request.headers.get(REQUEST_ID_HEADER)),
            )
        except httpx.TimeoutException as exc:
            return error_response(
                504, f"Worker {worker} timed out ({exc!r}).", ErrorCode.CONTROLLER_WORKER_TIMEOUT
            )
        except httpx.HTTPError as exc:
            return error_response(
                502,
                f"Worker {worker} could not be reached ({exc!r}).",
                ErrorCode.CONTROLLER_WORKER_TIMEOUT,
            )
        return _passthrough(response, response.content)

    def _passthrough(response: httpx.Response, content: bytes) -> Any:
        return PlainTextResponse(
            content,
            status_code=response.status_code,
            media_type=response.headers.get("content-type", "application/json"),
        )

    def forwarding_route(path: str) -> Any:
        async def route(body: ModelRequest, request: Request) -> Any:
            return await forward(request, path)

        return route

    for path in (
        "/worker_generate",
        "/worker_generate_completion",
        "/count_token",
        "/model_details",
        "/worker_get_conv_template",
    ):
        app.add_api_route(path, forwarding_route(path), methods=["POST"], name=path.strip("/"))

    @app.get("/test_connection")
    async def test_connection() -> PlainTextResponse:
        return PlainTextResponse("success")

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        try:
            await ctl(request).registry.workers()
        except Exception as exc:  # any Redis failure makes the controller unhealthy
            return JSONResponse({"status": "unhealthy", "error": repr(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app
