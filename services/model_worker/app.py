"""HTTP routes of the model worker: FastChat's worker protocol, plus health and metrics.

The FastChat routes take ``GenerateParams`` and answer NUL-framed JSON snapshots
(``/worker_generate_stream``) or the last snapshot (``/worker_generate``); the worker's status,
token counts, context length and conversation template are there for the controller and clients.
The engine's refusals become ``{"text", "error_code", "param"}`` with 400 (a bad parameter) or
429 with ``Retry-After`` (queue full). The TGI routes live in ``tgi_api.py``.

Every route but ``/health`` (and ``/metrics`` with PUBLIC_METRICS) needs a credential: the
WORKER_TOKEN (the controller, the model pool) or a user's key (a client calling the worker
directly); a refusal is a 401 in the route's own protocol. Request bodies are bounded
(``max_body_bytes``, 413 beyond), and tokenising runs off the event loop, so health checks and
heartbeats answer while a long prompt is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from services.model_worker.engine import ServingEngine, new_request_id
from services.model_worker.errors import EngineError, EngineOverloaded, InvalidRequest
from services.model_worker.registration import ControllerLink
from services.model_worker.tgi_api import TGI_PATHS, install_tgi_api
from services.model_worker.tgi_protocol import error_body
from shared.auth import Credentials, bearer_header
from shared.constants import ErrorCode
from shared.contracts import REQUEST_ID_HEADER
from shared.credential_guard import CredentialGuard, fastchat_refusal
from shared.http_errors import error_response, install_error_handlers
from shared.http_limits import DEFAULT_MAX_BODY_BYTES, BodyLimits
from shared.schemas import (
    CountTokenRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    GenerateParams,
    WorkerStatus,
)
from shared.settings import AuthSettings
from shared.worker_protocol import encode_chunk

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def request_id_of(request: Request) -> str:
    """The caller's request id (the controller forwards its own), else a new one."""
    return request.headers.get(REQUEST_ID_HEADER) or new_request_id()


def fastchat_error(exc: EngineError) -> JSONResponse:
    """An engine refusal as the FastChat protocol answers it."""
    if isinstance(exc, EngineOverloaded):
        headers = {"Retry-After": str(exc.retry_after)}
        return error_response(429, exc.message, exc.code, headers=headers)
    if isinstance(exc, InvalidRequest):
        return error_response(400, exc.message, exc.code, exc.param)
    return error_response(500, exc.message, exc.code)


def refusal_for(path: str, message: str, code: ErrorCode) -> dict:
    """A 401's body in the protocol of the route asked for."""
    if path in TGI_PATHS:
        return error_body(message, "authentication")
    return fastchat_refusal(path, message, code)


def controller_lifespan(
    engine: ServingEngine,
    worker_address: str,
    controller_address: str,
    heart_beat_interval: float,
    register: bool,
    worker_token: str = "",
) -> Lifespan:
    """Register and heartbeat while the app runs (when ``register``), with the worker token;
    unregister and release the engine on the way out."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(headers=bearer_header(worker_token)) as client:
            link = task = None
            if register:
                link = ControllerLink(
                    client, controller_address, worker_address, engine.status, heart_beat_interval
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

    return lifespan


def install_generation_routes(app: FastAPI, engine: ServingEngine) -> None:
    async def framed(chunks: AsyncIterator[dict]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield encode_chunk(chunk)

    async def generate_stream(params: GenerateParams, request: Request) -> StreamingResponse:
        engine.validate(params)
        request_id = request_id_of(request)
        chunks = engine.open_stream(params, request_id=request_id)  # admitted now, or refused
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


def install_model_routes(app: FastAPI, engine: ServingEngine) -> None:
    """What the controller and clients ask about the model; health and metrics."""

    @app.post("/worker_get_status")
    async def worker_get_status() -> WorkerStatus:
        return engine.status()

    @app.post("/count_token")
    async def count_token(body: CountTokenRequest) -> dict:
        count = await run_in_threadpool(engine.count_tokens, body.prompt)
        return {"count": count, "error_code": 0}

    @app.post("/worker_get_embeddings")
    async def worker_get_embeddings(body: EmbeddingsRequest) -> EmbeddingsResponse:
        """FastChat's embeddings route: mean-pooled, L2-normalised last hidden states, computed
        in the engine's embedding thread (``embedding.py``)."""
        result = await engine.embed(body.input)
        return EmbeddingsResponse(embedding=result.vectors, token_num=result.token_num)

    @app.post("/model_details")
    async def model_details() -> dict:
        return {"context_length": engine.context_len, **engine.details()}

    @app.post("/worker_get_conv_template")
    async def worker_get_conv_template() -> dict:
        return {"conv": engine.conversation.dict()}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(engine.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **engine.status().model_dump()}


def install_limits(app: FastAPI, auth: AuthSettings, max_body_bytes: int) -> None:
    """The credential check first (an unknown caller's body is never read), then the size and
    nesting limits on the body."""
    app.add_middleware(BodyLimits, max_bytes=max_body_bytes)
    open_paths = {"/health", "/metrics"} if auth.public_metrics else {"/health"}
    app.add_middleware(
        CredentialGuard,
        credentials=Credentials.from_settings(auth),
        open_paths=open_paths,
        refusal=refusal_for,
    )


def create_app(
    engine: ServingEngine,
    worker_address: str,
    controller_address: str,
    heart_beat_interval: float = 1.0,
    register: bool = True,
    auth: AuthSettings | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """``auth``: who may call (None: AuthSettings from the environment)."""
    auth = auth or AuthSettings()
    lifespan = controller_lifespan(
        engine,
        worker_address,
        controller_address,
        heart_beat_interval,
        register,
        auth.worker_token,
    )
    app = FastAPI(title="camel-chat model worker", lifespan=lifespan)
    install_limits(app, auth, max_body_bytes)
    install_error_handlers(app)

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return fastchat_error(exc)

    install_generation_routes(app, engine)
    install_model_routes(app, engine)
    install_tgi_api(app, engine)
    return app
