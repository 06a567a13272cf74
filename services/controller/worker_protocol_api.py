"""FastChat's controller protocol: the routes workers and FastChat-style clients call.

Workers register, send heartbeats and leave; clients list models, ask for a worker's address, or
have the controller relay a generation to a worker serving the model. Errors keep FastChat's
shape (``{"text", "error_code"}``, streamed as a chunk on the streaming route). Who may call which
route is decided before any of them runs (``auth.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from services.controller.proxy import Answer, forward, request_id_headers, stream_generation
from services.controller.workers import Controller
from shared.contracts import REQUEST_ID_HEADER
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
    "/worker_get_embeddings",
)


def controller_of(request: Request) -> Controller:
    return request.app.state.controller


@router.post("/register_worker")
async def register_worker(body: RegisterWorkerRequest, request: Request) -> None:
    """The controller reads the worker's status from its address itself (a caller could claim
    any model and speed); an address that does not answer is not registered (400 naming
    ``worker_name``), unless the body carries ``worker_status`` (FastChat's model_worker
    registers before it listens): then it is held unroutable until it answers (``admit``)."""
    await controller_of(request).admit(
        body.worker_name, body.check_heart_beat, body.multimodal, body.worker_status
    )


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


def _respond(answer: Answer) -> Response:
    if answer.stream is not None:
        return StreamingResponse(answer.stream, media_type=answer.media_type)
    return Response(answer.content, status_code=answer.status, media_type=answer.media_type)


@router.post("/worker_generate_stream")
async def worker_generate_stream(body: ModelRequest, request: Request) -> Response:
    """Relay a worker's NUL-framed stream. A worker that fails before its first chunk is
    replaced by another; no worker, or none left, is a final error chunk."""
    payload = await request.json()
    headers = request_id_headers(request.headers.get(REQUEST_ID_HEADER))
    c = controller_of(request)
    return _respond(await stream_generation(c, body.model, payload, headers))


def _forwarding_route(path: str) -> Any:
    async def route(body: ModelRequest, request: Request) -> Response:
        """Forwarded to a worker serving ``model`` (another one if it fails to answer); 404
        JSON when none serves it."""
        payload = await request.json()
        headers = request_id_headers(request.headers.get(REQUEST_ID_HEADER))
        c = controller_of(request)
        return _respond(await forward(c, path, body.model, payload, headers))

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
