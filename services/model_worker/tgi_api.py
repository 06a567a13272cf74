"""TGI routes on every worker: ``POST /``, ``/generate``, ``/generate_stream``, ``/tokenize``,
``GET /info``. Errors use TGI's ``{"error", "error_type"}`` body and status codes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.model_worker.engine import ServingEngine, new_request_id
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
from shared.http_errors import APIError
from shared.schemas import GenerateParams

VERSION = "0.1.0"


def _sse(data: dict[str, Any]) -> bytes:
    # TGI writes ``data:{json}`` with no space, one event per token, and no [DONE] sentinel.
    return f"data:{json.dumps(data, ensure_ascii=False)}\n\n".encode()


def install_tgi_api(app: FastAPI, engine: ServingEngine) -> None:
    tokenizer = engine.tokenizer

    def validation_error(message: str) -> JSONResponse:
        return JSONResponse(error_body(f"Input validation error: {message}", "validation"), 422)

    async def read(request: Request, stream: bool | None) -> tuple[TGIRequest, GenerateParams]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise TGIValidationError(f"malformed JSON body ({exc})") from None
        tgi = parse_request(body)
        input_tokens = len(tokenizer(tgi.inputs).input_ids) if tgi.inputs else 0
        is_stream = tgi.stream if stream is None else stream
        return tgi, to_generate_params(tgi, input_tokens, engine.context_len, is_stream)

    def prefill_tokens(params: GenerateParams) -> list[dict[str, Any]]:
        ids = tokenizer(params.prompt).input_ids
        if params.truncate:
            ids = ids[-params.truncate :]
        return [{"id": i, "text": tokenizer.decode([i]), "logprob": None} for i in ids]

    def open_events(params: GenerateParams, request: Request) -> AsyncIterator[dict[str, Any]]:
        request_id = request.headers.get("X-Request-Id") or new_request_id()
        return engine.open_stream(params, token_events=True, request_id=request_id, protocol="tgi")

    async def generate_once(tgi: TGIRequest, params: GenerateParams, request: Request) -> Any:
        started = time.monotonic()
        events = [e async for e in open_events(params, request)]
        if not events or events[-1].get("error_code"):
            message = events[-1]["text"] if events else "no output"
            return JSONResponse(
                error_body(f"Request failed during generation: {message}", "generation"), 424
            )
        p = tgi.parameters
        want_details = bool(p and (p.details or p.decoder_input_details))
        prefill = prefill_tokens(params) if p and p.decoder_input_details else []
        body = generate_response(events, want_details, params.seed, prefill)
        usage = events[-1]["usage"]
        elapsed = time.monotonic() - started
        headers = {
            "x-compute-type": engine.device,
            "x-compute-time": f"{elapsed:.6f}",
            "x-compute-characters": str(len(tgi.inputs)),
            "x-total-time": str(int(elapsed * 1000)),
            "x-prompt-tokens": str(usage["prompt_tokens"]),
            "x-generated-tokens": str(usage["completion_tokens"]),
        }
        return body, headers

    async def sse_stream(
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

    async def streaming(tgi: TGIRequest, params: GenerateParams, request: Request) -> Any:
        events = open_events(params, request)
        return StreamingResponse(
            sse_stream(tgi, params, events),
            media_type="text/event-stream",
            headers={
                "x-compute-type": engine.device,
                "x-compute-characters": str(len(tgi.inputs)),
                "X-Accel-Buffering": "no",
            },
        )

    async def handle(request: Request, stream: bool | None, as_list: bool) -> Any:
        try:
            tgi, params = await read(request, stream)
        except TGIValidationError as exc:
            if stream:  # TGI answers stream requests with 200 and one error event
                body = iter([_sse(error_body(f"Input validation error: {exc}", "validation"))])
                return StreamingResponse(body, media_type="text/event-stream")
            return validation_error(str(exc))
        try:
            if stream or (stream is None and tgi.stream):
                return await streaming(tgi, params, request)
            result = await generate_once(tgi, params, request)
        except APIError as exc:
            if exc.status_code == 429:
                return JSONResponse(
                    error_body("Model is overloaded", "overloaded"), 429, headers=exc.headers
                )
            return validation_error(exc.message)
        if isinstance(result, JSONResponse):
            return result
        body, headers = result
        return JSONResponse([body] if as_list else body, headers=headers)

    @app.post("/")
    async def compat(request: Request) -> Any:
        return await handle(request, None, as_list=True)

    @app.post("/generate")
    async def generate(request: Request) -> Any:
        return await handle(request, False, as_list=False)

    @app.post("/generate_stream")
    async def generate_stream(request: Request) -> Any:
        return await handle(request, True, as_list=False)

    @app.post("/tokenize")
    async def tokenize(request: Request) -> Any:
        try:
            inputs = (await request.json())["inputs"]
            if not isinstance(inputs, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return validation_error("`inputs` must be a string")
        encoding = tokenizer(inputs, return_offsets_mapping=True)
        return [
            {"id": i, "text": inputs[start:stop], "start": start, "stop": stop}
            for i, (start, stop) in zip(encoding.input_ids, encoding.offset_mapping, strict=True)
        ]

    @app.get("/info")
    async def info() -> dict[str, Any]:
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
