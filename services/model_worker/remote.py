"""Remote backends: a worker that forwards generation to an existing inference server.

- ``tgi``: a Text Generation Inference server (``/generate_stream``, SSE token events);
- ``openai``: an OpenAI-compatible server such as vLLM (``/v1/completions``, streamed).

The worker still renders prompts with its conversation template, registers with the controller,
heartbeats and reports its queue like any other, so GPU-scale engines plug into the same stack.
A local tokenizer (``--tokenizer-path``) supplies the template and token counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from services.model_worker.decoding import usage_of
from services.model_worker.engine import ServingEngine
from shared.constants import ErrorCode
from shared.conversation import Conversation
from shared.schemas import GenerateParams

log = logging.getLogger(__name__)

Backend = Literal["tgi", "openai"]


class UpstreamError(RuntimeError):
    def __init__(self, message: str, code: ErrorCode = ErrorCode.INTERNAL_ERROR) -> None:
        super().__init__(message)
        self.code = code


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The payload of each ``data:`` line (TGI writes ``data:{...}``, OpenAI ``data: {...}``)."""
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield line[len("data:") :].strip()


def _snapshot(
    text: str, prompt_tokens: int, completion_tokens: int, finish_reason: str | None
) -> dict[str, Any]:
    return {
        "text": text,
        "error_code": 0,
        "usage": usage_of(prompt_tokens, completion_tokens),
        "finish_reason": finish_reason,
    }


def tgi_parameters(params: GenerateParams) -> dict[str, Any]:
    """Our parameters as TGI's ``parameters`` (sampling options only when sampling)."""
    sampling = params.temperature >= 1e-5 and params.top_p >= 1e-8
    parameters: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "details": True,
        "do_sample": sampling,
        "stop": params.stop_strings()[:4],
        "seed": params.seed,
        "truncate": params.truncate,
    }
    if sampling:
        parameters["temperature"] = params.temperature
        if params.top_p < 1.0:
            parameters["top_p"] = params.top_p
        if params.top_k > 0:
            parameters["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        parameters["repetition_penalty"] = params.repetition_penalty
    return parameters


def openai_body(params: GenerateParams, model: str) -> dict[str, Any]:
    """Our parameters as a streamed ``/completions`` request."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": params.prompt,
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if stops := params.stop_strings():
        body["stop"] = stops[:4]
    if params.seed is not None:
        body["seed"] = params.seed
    # vLLM's extensions; sent only when they change something.
    if params.top_k > 0:
        body["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        body["repetition_penalty"] = params.repetition_penalty
    if params.stop_token_ids:
        body["stop_token_ids"] = params.stop_token_ids
    return body


class RemoteEngine(ServingEngine):
    def __init__(
        self,
        backend: Backend,
        base_url: str,
        tokenizer: Any,
        model_names: list[str],
        conversation: Conversation,
        *,
        context_len: int,
        remote_model: str | None = None,
        api_key: str | None = None,
        max_batch_size: int = 64,
        max_queue: int = 256,
        timeout: float = 600.0,
    ) -> None:
        super().__init__(
            model_names,
            conversation,
            tokenizer,
            context_len,
            len(tokenizer),
            f"remote:{backend}",
            max_batch_size,
            max_queue,
        )
        self.backend = backend
        self.base_url = base_url.rstrip("/")
        self.remote_model = remote_model or model_names[0]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        self._running = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return 0  # the remote server queues; we forward at once

    async def _stream(
        self, params: GenerateParams, token_events: bool
    ) -> AsyncIterator[dict[str, Any]]:
        self._running += 1
        try:
            prompt_tokens = await asyncio.to_thread(self.count_tokens, params.prompt)
            forward = self._tgi if self.backend == "tgi" else self._openai
            async for chunk in forward(params, token_events, prompt_tokens):
                yield chunk
        except UpstreamError as exc:
            yield {"text": str(exc), "error_code": int(exc.code)}
        except httpx.HTTPError as exc:
            yield {
                "text": f"The {self.backend} backend at {self.base_url} failed: {exc!r}",
                "error_code": int(ErrorCode.CONTROLLER_WORKER_TIMEOUT),
            }
        finally:
            self._running -= 1

    async def _open(self, path: str, body: dict[str, Any]) -> httpx.Response:
        request = self._client.build_request("POST", f"{self.base_url}{path}", json=body)
        response = await self._client.send(request, stream=True)
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")[:500]
            await response.aclose()
            code = (
                ErrorCode.ENGINE_OVERLOADED
                if response.status_code == 429
                else ErrorCode.INTERNAL_ERROR
            )
            raise UpstreamError(
                f"The {self.backend} backend answered {response.status_code}: {detail}", code
            )
        return response

    async def _tgi(
        self, params: GenerateParams, token_events: bool, prompt_tokens: int
    ) -> AsyncIterator[dict[str, Any]]:
        prefix = params.prompt if params.echo else ""
        response = await self._open(
            "/generate_stream", {"inputs": params.prompt, "parameters": tgi_parameters(params)}
        )
        text, count = "", 0
        try:
            async for data in sse_data(response):
                event = json.loads(data)
                if "error" in event:
                    raise UpstreamError(f"The tgi backend failed: {event['error']}")
                count += 1
                token = event["token"]
                text += "" if token.get("special") else token["text"]
                details = event.get("details")
                final = event.get("generated_text") is not None
                if final:
                    text = event["generated_text"]
                reason = None
                if final:
                    reason = (
                        "length" if (details or {}).get("finish_reason") == "length" else "stop"
                    )
                chunk = _snapshot(prefix + text, prompt_tokens, count, reason)
                if token_events:
                    chunk["token"] = token
                    if final:
                        chunk["stop_kind"] = (details or {}).get("finish_reason", "length")
                yield chunk
                if final:
                    return
        finally:
            await response.aclose()

    async def _openai(
        self, params: GenerateParams, token_events: bool, prompt_tokens: int
    ) -> AsyncIterator[dict[str, Any]]:
        if token_events:
            raise UpstreamError("per-token events are not available from an openai backend")
        prefix = params.prompt if params.echo else ""
        response = await self._open("/completions", openai_body(params, self.remote_model))
        text, count, reason = "", 0, None
        try:
            async for data in sse_data(response):
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    raise UpstreamError(f"The openai backend failed: {event['error']}")
                if usage := event.get("usage"):
                    prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
                    count = usage.get("completion_tokens", count)
                for choice in event.get("choices") or []:
                    text += choice.get("text") or ""
                    reason = choice.get("finish_reason") or reason
                    if not usage:
                        count += 1 if choice.get("text") else 0
                if event.get("choices"):
                    yield _snapshot(prefix + text, prompt_tokens, count, None)
        finally:
            await response.aclose()
        yield _snapshot(
            prefix + text, prompt_tokens, count, "length" if reason == "length" else "stop"
        )

    def shutdown(self) -> None:
        # The client is closed with the process; nothing waits on it.
        pass


def remote_context_len(backend: Backend, base_url: str, remote_model: str | None) -> int | None:
    """Ask the server for its context length (TGI ``/info``, vLLM's ``max_model_len``)."""
    try:
        if backend == "tgi":
            return int(httpx.get(f"{base_url}/info", timeout=10).json()["max_total_tokens"])
        models = httpx.get(f"{base_url}/models", timeout=10).json()["data"]
        for model in models:
            if remote_model in (None, model.get("id")) and model.get("max_model_len"):
                return int(model["max_model_len"])
    except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
        log.warning("event=remote_context_len_unknown backend=%s error=%r", backend, exc)
    return None
