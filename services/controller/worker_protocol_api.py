"""FastChat's controller protocol: the routes workers and FastChat-style clients call.

Workers register, send heartbeats and leave; clients list models, ask for a worker's address, or
have the controller relay a generation to a worker serving the model. Errors keep FastChat's
shape (``{"text", "error_code"}``, streamed as a chunk on the streaming route). These routes are
open: API keys guard only /v1.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from services.controller.proxy import (
    error_chunk,
    open_worker_stream,
    relay_stream,
    request_id_headers,
)
from services.controller.workers import Controller
from shared.constants import ErrorCode
from shared.contracts import REQUEST_ID_HEADER
from shared.http_errors import APIError, error_response
from shared.schemas import (
    HeartbeatRequest,
    HeartbeatResponse,
    ModelRequest,
    RegisterWorkerRequest,
    UnregisterWorkerRequest,
    WorkerStatus,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["worker protocol"])

# Non-streaming calls relayed as they are to a worker serving the body's ``model``.
FORWARDED_PATHS = (
    "/worker_generate",
    "/worker_generate_completion",
    "/count_token",
    "/model_details",
    "/worker_get_conv_template",
)


def controller_of(request: Request) -> Controller:
    return request.app.state.controller


@router.post("/register_worker")
async def register_worker(body: RegisterWorkerRequest, request: Request) -> None:
    """Without ``worker_status`` the controller asks the worker for it."""
    c = controller_of(request)
    status = body.worker_status or await c.fetch_status(body.worker_name)
    if status is None:
        raise APIError(
            502,
            f"Could not read the status of worker {body.worker_name}; not registered.",
            ErrorCode.CONTROLLER_WORKER_TIMEOUT,
            "worker_name",
        )
    await c.registry.register(body.worker_name, status, body.check_heart_beat, body.multimodal)


@router.post("/receive_heart_beat")
async def receive_heart_beat(body: HeartbeatRequest, request: Request) -> HeartbeatResponse:
    """``exist: false`` tells a worker the controller forgot it: it registers again."""
    exist = await controller_of(request).registry.heartbeat(body.worker_name, body.queue_length)
    return HeartbeatResponse(exist=exist)


@router.post("/unregister_worker")
async def unregister_worker(body: UnregisterWorkerRequest, request: Request) -> None:
    """Extension of the FastChat protocol: a worker that stops cleanly leaves at once
    instead of staying routable until its heartbeat expires."""
    await controller_of(request).registry.remove(body.worker_name)


@router.post("/refresh_all_workers")
async def refresh_all_workers(request: Request) -> None:
    await controller_of(request).refresh()


@router.post("/list_models")
async def list_models(request: Request) -> dict[str, list[str]]:
    return {"models": await controller_of(request).registry.models()}


async def _models(request: Request, multimodal: bool) -> dict[str, list[str]]:
    workers = (await controller_of(request).registry.workers()).values()
    names = {m for w in workers if w.multimodal == multimodal for m in w.model_names}
    return {"models": sorted(names)}


@router.post("/list_language_models")
async def list_language_models(request: Request) -> dict[str, list[str]]:
    return await _models(request, multimodal=False)


@router.post("/list_multimodal_models")
async def list_multimodal_models(request: Request) -> dict[str, list[str]]:
    return await _models(request, multimodal=True)


@router.get("/list_workers")
async def list_workers(request: Request) -> dict[str, Any]:
    workers = await controller_of(request).registry.workers()
    return {"workers": [w.model_dump() for w in workers.values()]}


@router.post("/get_worker_address")
async def get_worker_address(body: ModelRequest, request: Request) -> dict[str, str]:
    # FastChat clients test for "" when no worker serves the model; keep that contract.
    c = controller_of(request)
    address = await c.registry.pick_worker(body.model, c.dispatch_method)
    return {"address": address or ""}


@router.post("/worker_get_status")
async def worker_get_status(request: Request) -> WorkerStatus:
    """The sum over every worker, as if the controller were one big worker."""
    workers = (await controller_of(request).registry.workers()).values()
    return WorkerStatus(
        model_names=sorted({m for w in workers for m in w.model_names}),
        speed=sum(w.speed for w in workers),
        queue_length=sum(w.queue_length for w in workers),
    )


def _one_chunk(message: str, code: ErrorCode) -> StreamingResponse:
    chunk = error_chunk(message, code)
    return StreamingResponse(iter([chunk]), media_type="application/octet-stream")


def _passthrough(response: httpx.Response, content: bytes) -> PlainTextResponse:
    return PlainTextResponse(
        content,
        status_code=response.status_code,
        media_type=response.headers.get("content-type", "application/json"),
    )


@router.post("/worker_generate_stream")
async def worker_generate_stream(body: ModelRequest, request: Request) -> Any:
    """Relay a worker's NUL-framed stream; no worker or a lost one is a final error chunk."""
    c = controller_of(request)
    payload = await request.json()
    worker = await c.registry.pick_worker(body.model, c.dispatch_method)
    if worker is None:
        return _one_chunk(
            f"No worker is serving model '{body.model}'.", ErrorCode.CONTROLLER_NO_WORKER
        )
    headers = request_id_headers(request.headers.get(REQUEST_ID_HEADER))
    try:
        response = await open_worker_stream(
            c.client, worker, payload, c.settings.worker_api_timeout, headers
        )
    except httpx.HTTPError as exc:
        log.warning("event=worker_unreachable worker=%s error=%r", worker, exc)
        return _one_chunk(
            f"The worker {worker} for model '{body.model}' could not be reached ({exc!r}).",
            ErrorCode.CONTROLLER_WORKER_TIMEOUT,
        )
    if response.status_code != 200:
        content = await response.aread()
        await response.aclose()
        return _passthrough(response, content)
    return StreamingResponse(relay_stream(response, worker), media_type="application/octet-stream")


async def _forward(request: Request, path: str) -> Any:
    """Forward a non-streaming call to a worker serving ``model``; 404 JSON if none."""
    c = controller_of(request)
    payload = await request.json()
    worker = await c.worker_for(ModelRequest.model_validate(payload).model)
    headers = request_id_headers(request.headers.get(REQUEST_ID_HEADER))
    try:
        response = await c.client.post(f"{worker}{path}", json=payload, headers=headers)
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


def _forwarding_route(path: str) -> Any:
    async def route(body: ModelRequest, request: Request) -> Any:
        return await _forward(request, path)

    return route


for _path in FORWARDED_PATHS:
    router.add_api_route(_path, _forwarding_route(_path), methods=["POST"], name=_path.strip("/"))


@router.get("/test_connection")
async def test_connection() -> PlainTextResponse:
    return PlainTextResponse("success")


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    try:
        await controller_of(request).registry.workers()
    except Exception as exc:  # any Redis failure makes the controller unhealthy
        return JSONResponse({"status": "unhealthy", "error": repr(exc)}, status_code=503)
    return JSONResponse({"status": "ok"})
