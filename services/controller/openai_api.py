"""Routes of the OpenAI-compatible API served by the controller (thin: parse, call, shape):
/v1/models, /v1/chat/completions, /v1/completions and /v1/embeddings.

FastAPI validates the request bodies against ``openai_protocol``'s models (so they are in the
OpenAPI document); ``openai_routes.OpenAIRoute`` turns a bad body into OpenAI's 400 naming the
field, as on the record APIs (the worker-protocol routes keep their FastChat shape).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from services.controller.openai_convert import new_id
from services.controller.openai_embeddings import EmbeddingRequest
from services.controller.openai_errors import OpenAIError
from services.controller.openai_protocol import ChatCompletionRequest, CompletionRequest
from services.controller.openai_routes import openai_route
from services.controller.openai_service import Answer, OpenAIService
from shared.contracts import REQUEST_ID_HEADER

# Accept a caller's id only if it is short printable ASCII (it is logged and forwarded).
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def _service(request: Request) -> OpenAIService:
    return request.app.state.openai


def _incoming_request_id(request: Request) -> str | None:
    value = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return value if _REQUEST_ID.match(value) else None


def _assign_ids(request: Request, prefix: str) -> tuple[str, str]:
    """(completion id, request id): the caller's X-Request-Id if sane, else the completion id."""
    completion_id = new_id(prefix)
    request_id = _incoming_request_id(request) or completion_id
    request.state.request_id = request_id
    return completion_id, request_id


def _respond(answer: Answer, request_id: str) -> Response:
    headers = {REQUEST_ID_HEADER: request_id}
    if isinstance(answer, BaseModel):
        return Response(answer.model_dump_json(), media_type="application/json", headers=headers)
    headers |= {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(answer, media_type="text/event-stream", headers=headers)


def create_openai_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"], route_class=openai_route(None))

    @router.get("/models")
    async def list_models(request: Request) -> Response:
        return _respond(await _service(request).list_models(), _assign_ids(request, "req")[1])

    @router.get("/models/{model:path}")
    async def retrieve_model(model: str, request: Request) -> Response:
        return _respond(await _service(request).get_model(model), _assign_ids(request, "req")[1])

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        completion_id, request_id = _assign_ids(request, "chatcmpl")
        answer = await _service(request).chat_completion(body, completion_id, request_id)
        return _respond(answer, request_id)

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        completion_id, request_id = _assign_ids(request, "cmpl")
        answer = await _service(request).completion(body, completion_id, request_id)
        return _respond(answer, request_id)

    @router.post("/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        embedding_id, request_id = _assign_ids(request, "embd")
        answer = await _service(request).embeddings(body, embedding_id, request_id)
        return _respond(answer, request_id)

    @router.post("/engines/{model:path}/embeddings", include_in_schema=False)
    async def engine_embeddings(model: str, request: Request) -> Response:
        """FastChat's older spelling: the model in the path, else the same request."""
        payload = await _json_object(request)
        try:
            body = EmbeddingRequest.model_validate({**payload, "model": model})
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        return await embeddings(body, request)

    return router


async def _json_object(request: Request) -> dict:
    try:
        payload = await request.json()
    except ValueError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "the body is not JSON"}]
        ) from None
    if not isinstance(payload, dict):
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "a JSON object is required"}]
        )
    return payload


async def _openai_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenAIError)
    headers = dict(exc.headers)
    request_id = getattr(request.state, "request_id", None) or _incoming_request_id(request)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(exc.body().model_dump(), status_code=exc.status_code, headers=headers)


def install_openai_api(app: FastAPI) -> None:
    """Add /v1/* and /metrics to the controller (who may call them: ``auth.py``).

    The service itself is built in the app's lifespan (it needs the registry and HTTP client).
    """
    app.include_router(create_openai_router())
    app.add_exception_handler(OpenAIError, _openai_error)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(_service(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
