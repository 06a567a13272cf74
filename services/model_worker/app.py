"""HTTP routes of the model worker (FastChat worker protocol, spec §4.4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from services.model_worker.engine import ServingEngine, new_request_id
from services.model_worker.registration import ControllerLink
from services.model_worker.tgi_api import install_tgi_api
from shared.http_errors import install_error_handlers
from shared.schemas import CountTokenRequest, GenerateParams, WorkerStatus
from shared.worker_protocol import encode_chunk

log = logging.getLogger(__name__)


REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(request: Request) -> str:
    """The caller's request id (the controller forwards its own), else a new one."""
    return request.headers.get(REQUEST_ID_HEADER) or new_request_id()


def create_app(
    engine: ServingEngine,
    worker_address: str,
    controller_address: str,
    heart_beat_interval: float = 2.0,
    register: bool = True,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = link = None
        async with httpx.AsyncClient() as client:
            if register:
                link = ControllerLink(
                    client,
                    controller_address,
                    worker_address,
                    engine.status,
                    heart_beat_interval,
                )
                task = asyncio.create_task(link.run(), name="controller-link")
            log.info(
                "event=worker_started address=%s models=%s", worker_address, engine.model_names
            )
            yield
            if task is not None and link is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await link.unregister()
        engine.shutdown()

    app = FastAPI(title="camel-chat model worker", lifespan=lifespan)
    install_error_handlers(app)

    async def framed(chunks: AsyncIterator[dict]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield encode_chunk(chunk)

    async def generate_stream(params: GenerateParams, request: Request) -> StreamingResponse:
        engine.validate(params)
        request_id = request_id_of(request)
        chunks = engine.open_stream(params, request_id=request_id)  # admits now, or 429
        return StreamingResponse(
            framed(chunks),
            media_type="application/octet-stream",
            headers={REQUEST_ID_HEADER: request_id},
        )

    async def generate(params: GenerateParams, request: Request) -> JSONResponse:
        engine.validate(params)
        request_id = request_id_of(request)
        result = await engine.generate(params, request_id=request_id)
        return JSONResponse(result, headers={REQUEST_ID_HEADER: request_id})

    app.post("/worker_generate_stream")(generate_stream)
    app.post("/worker_generate_completion_stream")(generate_stream)
    app.post("/worker_generate")(generate)
    app.post("/worker_generate_completion")(generate)

    @app.post("/worker_get_status")
    async def worker_get_status() -> WorkerStatus:
        return engine.status()

    @app.post("/count_token")
    async def count_token(body: CountTokenRequest) -> dict:
        return {"count": engine.count_tokens(body.prompt), "error_code": 0}

    @app.post("/model_details")
    async def model_details() -> dict:
        return {"context_length": engine.context_len}

    @app.post("/worker_get_conv_template")
    async def worker_get_conv_template() -> dict:
        return {"conv": engine.conversation.dict()}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(engine.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    install_tgi_api(app, engine)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **engine.status().model_dump()}

    return app
