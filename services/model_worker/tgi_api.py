"""TGI routes on every worker: ``POST /``, ``/generate``, ``/generate_stream``, ``/tokenize``,
``GET /info``. Errors use TGI's ``{"error", "error_type"}`` body and status codes: 422 for a bad
request, 424 when generation fails, 429 ("Model is overloaded", with ``Retry-After``) when the
engine's queue is full.

Tokenising (token counts, ``/tokenize``, prefill details) runs in a thread, never on the event
loop. The routes read their bodies by hand, to answer in TGI's shape; their schemas are still
documented in the OpenAPI document.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from services.model_worker.engine import ServingEngine, new_request_id
from services.model_worker.errors import EngineError, EngineOverloaded
from services.model_worker.tgi_protocol import (
    MAX_BEST_OF,
    MAX_STOP_SEQUENCES,
    TGIRequest,
    TGIValidationError,
    error_body,
    generate_response,
    parse_request,
    stream_event,
    to_generate_params,
)
from shared.contracts import REQUEST_ID_HEADER
from shared.schemas import GenerateParams

VERSION = "0.1.0"
TGI_PATHS = frozenset({"/", "/generate", "/generate_stream", "/tokenize", "/info"})


class TokenizeRequest(BaseModel):
    inputs: str


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place, to stand in an OpenAPI
    document (whose references point elsewhere)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body that the route parses itself."""
    content = {"application/json": {"schema": inline_schema(model)}}
    return {"requestBody": {"required": True, "content": content}}


def _sse(data: dict[str, Any]) -> bytes:
    # TGI writes ``data:{json}`` with no space, one event per token, and no [DONE] sentinel.
    return f"data:{json.dumps(data, ensure_ascii=False)}\n\n".encode()


def validation_error(message: str) -> JSONResponse:
    return JSONResponse(error_body(f"Input validation error: {message}", "validation"), 422)


def tgi_error(exc: EngineError) -> JSONResponse:
    """An engine refusal as TGI answers it."""
    if isinstance(exc, EngineOverloaded):
        headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(error_body("Model is overloaded", "overloaded"), 429, headers=headers)
    return validation_error(exc.message)


class TGIRoutes:
    """The handlers of the TGI routes, over one engine."""

    def __init__(self, engine: ServingEngine) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer

    async def _read(
        self, request: Request, stream: bool | None
    ) -> tuple[TGIRequest, GenerateParams]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise TGIValidationError(f"malformed JSON body ({exc})") from None
        return await run_in_threadpool(self._parse, body, stream)

    def _parse(self, body: Any, stream: bool | None) -> tuple[TGIRequest, GenerateParams]:
        """Validate and count the input's tokens (in a thread: a long input takes a while)."""
        tgi = parse_request(body)
        input_tokens = len(self.tokenizer(tgi.inputs).input_ids) if tgi.inputs else 0
        is_stream = tgi.stream if stream is None else stream
        return tgi, to_generate_params(tgi, input_tokens, self.engine.context_len, is_stream)

    def _prefill_tokens(self, params: GenerateParams) -> list[dict[str, Any]]:
        ids = self.tokenizer(params.prompt).input_ids
        if params.truncate:
            ids = ids[-params.truncate :]
        return [{"id": i, "text": self.tokenizer.decode([i]), "logprob": None} for i in ids]

    def _open_events(
        self, params: GenerateParams, request: Request
    ) -> AsyncIterator[dict[str, Any]]:
        request_id = request.headers.get(REQUEST_ID_HEADER) or new_request_id()
        return self.engine.open_stream(
            params, token_events=True, request_id=request_id, protocol="tgi"
        )

    def _compute_headers(
        self, tgi: TGIRequest, usage: dict[str, int], started: float
    ) -> dict[str, str]:
        elapsed = time.monotonic() - started
        return {
            "x-compute-type": self.engine.device,
            "x-compute-time": f"{elapsed:.6f}",
            "x-compute-characters": str(len(tgi.inputs)),
            "x-total-time": str(int(elapsed * 1000)),
            "x-prompt-tokens": str(usage["prompt_tokens"]),
            "x-generated-tokens": str(usage["completion_tokens"]),
        }

    async def _generate_once(
        self, tgi: TGIRequest, params: GenerateParams, request: Request, as_list: bool
    ) -> JSONResponse:
        started = time.monotonic()
        events = [e async for e in self._open_events(params, request)]
        if not events or events[-1].get("error_code"):
            message = events[-1]["text"] if events else "no output"
            return JSONResponse(
                error_body(f"Request failed during generation: {message}", "generation"), 424
            )
        p = tgi.parameters
        want_details = bool(p and (p.details or p.decoder_input_details))
        want_prefill = bool(p and p.decoder_input_details)
        prefill = await run_in_threadpool(self._prefill_tokens, params) if want_prefill else []
        body = generate_response(events, want_details, params.seed, prefill)
        headers = self._compute_headers(tgi, events[-1]["usage"], started)
        return JSONResponse([body] if as_list else body, headers=headers)

    @staticmethod
    async def _sse_stream(
        tgi: TGIRequest, params: GenerateParams, events: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        want_details = bool(tgi.parameters and tgi.parameters.details)
        index = 0
        async for event in events:
            if event.get("error_code"):
                yield _sse(error_body(event["text"], "generation"))
                return
            index += 1
            final = event.get("finish_reason") is not None
            yield _sse(stream_event(event, index, final, want_details, params.seed))
            if final:
                return
        yield _sse(error_body("Incomplete generation stream", "incomplete_generation_stream"))

    def _streaming(
        self, tgi: TGIRequest, params: GenerateParams, request: Request
    ) -> StreamingResponse:
        events = self._open_events(params, request)
        return StreamingResponse(
            self._sse_stream(tgi, params, events),
            media_type="text/event-stream",
            headers={
                "x-compute-type": self.engine.device,
                "x-compute-characters": str(len(tgi.inputs)),
                "X-Accel-Buffering": "no",
            },
        )

    async def handle(self, request: Request, stream: bool | None, as_list: bool) -> Any:
        """``stream``: what the route says (None: the body's ``stream`` decides)."""
        try:
            tgi, params = await self._read(request, stream)
        except TGIValidationError as exc:
            if stream:  # TGI answers stream requests with 200 and one error event
                body = iter([_sse(error_body(f"Input validation error: {exc}", "validation"))])
                return StreamingResponse(body, media_type="text/event-stream")
            return validation_error(str(exc))
        try:
            if stream or (stream is None and tgi.stream):
                return self._streaming(tgi, params, request)
            return await self._generate_once(tgi, params, request, as_list)
        except EngineError as exc:
            return tgi_error(exc)

    async def tokenize(self, request: Request) -> Any:
        try:
            inputs = (await request.json())["inputs"]
            if not isinstance(inputs, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return validation_error("`inputs` must be a string")
        content = await run_in_threadpool(self._tokens_json, inputs)
        return Response(content, media_type="application/json")

    def _tokens_json(self, inputs: str) -> bytes:
        """The tokens of ``inputs`` with their spans, as JSON (built in a thread)."""
        encoding = self.tokenizer(inputs, return_offsets_mapping=True)
        tokens = [
            {"id": i, "text": inputs[start:stop], "start": start, "stop": stop}
            for i, (start, stop) in zip(encoding.input_ids, encoding.offset_mapping, strict=True)
        ]
        return json.dumps(tokens, ensure_ascii=False, separators=(",", ":")).encode()

    def info(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "model_id": engine.model_names[0],
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": engine.max_batch_size + engine.max_queue,
            "max_best_of": MAX_BEST_OF,
            "max_stop_sequences": MAX_STOP_SEQUENCES,
            "max_input_tokens": engine.context_len - 1,
            "max_total_tokens": engine.context_len,
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": "camel-chat-worker",
            "version": VERSION,
            "sha": None,
            "docker_label": None,
        }


def install_tgi_api(app: FastAPI, engine: ServingEngine) -> None:
    routes = TGIRoutes(engine)

    generate_body = json_body(TGIRequest)

    @app.post("/", openapi_extra=generate_body)
    async def compat(request: Request) -> Any:
        return await routes.handle(request, None, as_list=True)

    @app.post("/generate", openapi_extra=generate_body)
    async def generate(request: Request) -> Any:
        return await routes.handle(request, False, as_list=False)

    @app.post("/generate_stream", openapi_extra=generate_body)
    async def generate_stream(request: Request) -> Any:
        return await routes.handle(request, True, as_list=False)

    @app.post("/tokenize", openapi_extra=json_body(TokenizeRequest))
    async def tokenize(request: Request) -> Any:
        return await routes.tokenize(request)

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return routes.info()
