"""The OpenAI service against a scripted worker (httpx.MockTransport): worker calls per request,
stream event order, and error statuses, without processes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from services.controller.openai_errors import OpenAIError
from services.controller.openai_protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)
from services.controller.openai_service import OpenAIService
from shared.conversation import get_conv_template
from shared.schemas import WorkerInfo
from shared.settings import ControllerSettings
from shared.worker_protocol import encode_chunk

WORKER = "http://worker-a:1"
OTHER = "http://worker-b:1"


def snapshots(texts: Sequence[str], finish: str = "stop", prompt_tokens: int = 5) -> list[dict]:
    out = []
    for i, text in enumerate(texts):
        last = i == len(texts) - 1
        out.append(
            {
                "text": text,
                "error_code": 0,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": i + 1,
                    "total_tokens": prompt_tokens + i + 1,
                },
                "finish_reason": finish if last else None,
            }
        )
    return out


class FakeWorker:
    """Answers the worker protocol from a script and records every request."""

    def __init__(self, chunks: list[dict] | None = None, context: int = 64, count: int = 10):
        self.chunks = chunks if chunks is not None else snapshots(["He", "Hello"])
        self.by_prompt: dict[str, list[dict]] = {}
        self.context = context
        self.count = count
        self.generate_status = 200
        self.generate_headers: dict[str, str] = {}
        self.generate_body: dict[str, Any] = {}
        self.refuse = False
        self.slow = False
        self.calls: list[httpx.Request] = []

    def paths(self) -> list[str]:
        return [r.url.path for r in self.calls]

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(r.content) for r in self.calls if r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        path = request.url.path
        if self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        if self.slow and path == "/worker_generate_stream":
            raise httpx.ReadTimeout("no answer in time", request=request)
        if path == "/worker_get_conv_template":
            return httpx.Response(200, json={"conv": get_conv_template("vicuna_v1.1").dict()})
        if path == "/model_details":
            return httpx.Response(200, json={"context_length": self.context})
        if path == "/count_token":
            return httpx.Response(200, json={"count": self.count, "error_code": 0})
        if path == "/worker_generate_stream":
            if self.generate_status != 200:
                return httpx.Response(
                    self.generate_status, json=self.generate_body, headers=self.generate_headers
                )
            prompt = json.loads(request.content)["prompt"]
            chunks = self.by_prompt.get(prompt, self.chunks)
            return httpx.Response(200, content=b"".join(encode_chunk(c) for c in chunks))
        return httpx.Response(404, json={"detail": "Not Found"})


class FakeRegistry:
    """Workers of each model, picked in order (the first not tried yet)."""

    def __init__(self, served: dict[str, list[str]]) -> None:
        self.served = served

    async def pick_worker(self, model: str, method: str, exclude: Sequence[str] = ()) -> str | None:
        return next((w for w in self.served.get(model, []) if w not in exclude), None)

    async def remove(self, worker: str) -> None:
        self.served = {m: [w for w in ws if w != worker] for m, ws in self.served.items()}

    async def workers(self) -> dict[str, WorkerInfo]:
        names: dict[str, list[str]] = {}
        for model, workers in self.served.items():
            for worker in workers:
                names.setdefault(worker, []).append(model)
        return {w: WorkerInfo(name=w, model_names=m, registered_at=100.0) for w, m in names.items()}


class FakeKnown:
    def __init__(self) -> None:
        self.names: set[str] = set()

    async def touch(self, models: Sequence[str]) -> None:
        self.names.update(models)

    async def is_known(self, model: str) -> bool:
        return model in self.names

    async def prune(self) -> None:
        return None


@pytest.fixture
def fake() -> FakeWorker:
    return FakeWorker()


@pytest.fixture
def other() -> FakeWorker:
    """A second worker of "m", tried when the first fails."""
    return FakeWorker(snapshots(["Fr", "From B"]))


@pytest.fixture
async def service(fake: FakeWorker, other: FakeWorker) -> AsyncIterator[OpenAIService]:
    by_host = {httpx.URL(WORKER).host: fake, httpx.URL(OTHER).host: other}
    transport = httpx.MockTransport(lambda request: by_host[request.url.host](request))
    async with httpx.AsyncClient(transport=transport) as client:
        yield OpenAIService(
            FakeRegistry({"m": [WORKER]}),  # type: ignore[arg-type]
            FakeKnown(),  # type: ignore[arg-type]
            client,
            ControllerSettings(),
        )


def serve_with_both(service: OpenAIService) -> FakeRegistry:
    registry = service._registry  # type: ignore[attr-defined]
    registry.served["m"] = [WORKER, OTHER]
    return registry


def body(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    )


async def events(answer: Any) -> list[Any]:
    out = []
    async for raw in answer:
        data = raw.decode().removeprefix("data: ").removesuffix("\n\n")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_a_warm_request_makes_exactly_one_worker_call(
    service: OpenAIService, fake: FakeWorker
) -> None:
    await service.chat_completion(body(max_tokens=8), "chatcmpl-1", "rid-1")
    assert sorted(fake.paths()) == [
        "/model_details",
        "/worker_generate_stream",
        "/worker_get_conv_template",
    ]
    fake.calls.clear()
    answer = await service.chat_completion(body(max_tokens=8), "chatcmpl-2", "rid-2")
    assert fake.paths() == ["/worker_generate_stream"]
    assert fake.calls[0].headers["x-request-id"] == "rid-2"
    assert isinstance(answer, ChatCompletion)
    assert answer.model_dump() == {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": answer.created,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    sent = fake.bodies("/worker_generate_stream")[0]
    assert sent["prompt"].endswith("USER: Hi ASSISTANT:")
    assert (sent["max_new_tokens"], sent["echo"]) == (8, False)


async def test_without_max_tokens_the_context_is_filled_after_counting_the_prompt(
    service: OpenAIService, fake: FakeWorker
) -> None:
    await service.chat_completion(body(), "chatcmpl-1", "rid")
    assert "/count_token" in fake.paths()
    assert fake.bodies("/worker_generate_stream")[0]["max_new_tokens"] == 64 - 10


async def test_a_prompt_filling_the_context_is_400_before_generating(
    service: OpenAIService, fake: FakeWorker
) -> None:
    fake.count = 64
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(), "chatcmpl-1", "rid")
    assert (caught.value.status_code, caught.value.code) == (400, "context_length_exceeded")
    assert "/worker_generate_stream" not in fake.paths()


async def test_max_tokens_as_large_as_the_context_is_400(service: OpenAIService) -> None:
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(max_completion_tokens=64), "c", "r")
    assert (caught.value.status_code, caught.value.param) == (400, "max_completion_tokens")


async def test_stream_events_in_order_with_partial_utf8_held_back(
    service: OpenAIService, fake: FakeWorker
) -> None:
    fake.chunks = snapshots(["A\ufffd", "A\u4f60", "A\u4f60 b"], finish="length")
    answer = await service.chat_completion(
        body(stream=True, stream_options={"include_usage": True}), "chatcmpl-9", "rid"
    )
    got = await events(answer)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    assert all(c["id"] == "chatcmpl-9" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert deltas == ["A", "\u4f60", " b"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


async def test_a_repeated_final_snapshot_is_read_once(
    service: OpenAIService, fake: FakeWorker
) -> None:
    fake.chunks = [*snapshots(["x", "xy"]), snapshots(["x", "xy"])[-1]]
    got = await events(await service.chat_completion(body(stream=True), "c", "r"))
    finishes = [c for c in got[:-1] if c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1
    assert "usage" not in got[0]


async def test_an_error_mid_stream_is_an_error_event_then_done(
    service: OpenAIService, fake: FakeWorker
) -> None:
    fake.chunks = [snapshots(["ab", "abc"])[0], {"text": "CUDA OOM", "error_code": 50002}]
    got = await events(await service.chat_completion(body(stream=True), "c", "r"))
    assert got[-1] == "[DONE]"
    assert got[-2] == {
        "error": {"message": "CUDA OOM", "type": "server_error", "param": None, "code": "50002"}
    }
    assert got[1]["choices"][0]["delta"] == {"content": "ab"}


async def test_an_error_before_any_output_gets_a_real_status(
    service: OpenAIService, fake: FakeWorker
) -> None:
    fake.chunks = [{"text": "Internal error while generating: boom", "error_code": 50001}]
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(stream=True), "c", "r")
    assert caught.value.status_code == 500
    assert "boom" in caught.value.message


async def test_worker_overload_is_429_with_retry_after(
    service: OpenAIService, fake: FakeWorker
) -> None:
    fake.generate_status = 429
    fake.generate_body = {"text": "busy", "error_code": 42903}
    fake.generate_headers = {"Retry-After": "3"}
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(max_tokens=4), "c", "r")
    assert caught.value.status_code == 429
    assert caught.value.headers == {"retry-after": "3"}


async def test_unknown_model_is_404_and_a_known_one_without_worker_is_503(
    service: OpenAIService,
) -> None:
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(model="nope"), "c", "r")
    assert (caught.value.status_code, caught.value.code) == (404, "model_not_found")
    await service.list_models()  # marks "m" as known
    service._registry.served.clear()  # type: ignore[attr-defined]
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(), "c", "r")
    assert (caught.value.status_code, caught.value.param) == (503, "model")


async def test_an_unreachable_worker_is_503_leaves_routing_and_its_facts_are_forgotten(
    service: OpenAIService, fake: FakeWorker
) -> None:
    await service.chat_completion(body(max_tokens=4), "c", "r")
    fake.refuse = True
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(max_tokens=4), "c", "r")
    assert (caught.value.status_code, caught.value.code) == (503, "worker_unavailable")
    registry = service._registry  # type: ignore[attr-defined]
    assert registry.served == {"m": []}
    # It comes back (its next heartbeat registers it again): its facts are asked again.
    fake.refuse = False
    fake.calls.clear()
    registry.served["m"] = [WORKER]
    await service.chat_completion(body(max_tokens=4), "c", "r")
    assert "/worker_get_conv_template" in fake.paths()


# ---- failover ---------------------------------------------------------------------------


async def test_a_refused_request_goes_to_another_worker_and_the_refuser_leaves(
    service: OpenAIService, fake: FakeWorker, other: FakeWorker
) -> None:
    registry = serve_with_both(service)
    fake.refuse = True
    answer = await service.chat_completion(body(max_tokens=4), "c", "r")
    assert isinstance(answer, ChatCompletion)
    assert answer.choices[0].message.content == "From B"
    assert registry.served["m"] == [OTHER]
    streamed = await events(await service.chat_completion(body(stream=True), "c", "r"))
    assert streamed[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("status", "chunks"),
    [
        (503, None),
        (429, None),
        (500, None),
        (200, []),  # the stream ends before any output
        (200, [{"text": "Internal error while generating: boom", "error_code": 50001}]),
    ],
)
async def test_a_failure_before_the_first_token_is_retried_elsewhere(
    service: OpenAIService,
    fake: FakeWorker,
    other: FakeWorker,
    status: int,
    chunks: list[dict] | None,
) -> None:
    registry = serve_with_both(service)
    fake.generate_status = status
    fake.generate_body = {"text": "failing", "error_code": 50001}
    if chunks is not None:
        fake.chunks = chunks
    got = await events(await service.chat_completion(body(stream=True, max_tokens=4), "c", "r"))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in got[:-1])
    assert text == "From B"
    assert registry.served["m"] == [WORKER, OTHER]  # answered: it stays routable
    completion = {"model": "m", "prompt": "x", "max_tokens": 4}
    answer = await service.completion(CompletionRequest.model_validate(completion), "c", "r")
    assert isinstance(answer, Completion) and answer.choices[0].text == "From B"


async def test_a_bad_request_or_a_slow_worker_is_not_retried(
    service: OpenAIService, fake: FakeWorker, other: FakeWorker
) -> None:
    serve_with_both(service)
    fake.generate_status = 400
    fake.generate_body = {"text": "max_new_tokens: too large", "error_code": 40302}
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(max_tokens=4), "c", "r")
    assert caught.value.status_code == 400
    fake.generate_status = 200
    fake.slow = True
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(max_tokens=4), "c", "r")
    assert caught.value.status_code == 504
    assert "/worker_generate_stream" not in other.paths()


async def test_an_error_after_the_first_token_is_not_retried(
    service: OpenAIService, fake: FakeWorker, other: FakeWorker
) -> None:
    serve_with_both(service)
    fake.chunks = [snapshots(["ab", "abc"])[0], {"text": "CUDA OOM", "error_code": 50002}]
    got = await events(await service.chat_completion(body(stream=True), "c", "r"))
    assert got[-2]["error"]["message"] == "CUDA OOM"
    assert "/worker_generate_stream" not in other.paths()


async def test_tries_are_bounded(fake: FakeWorker) -> None:
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(str(request.url.host))
        raise httpx.ConnectError("connection refused", request=request)

    workers = [f"http://w{i}:1" for i in range(5)]
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        service = OpenAIService(
            FakeRegistry({"m": workers}),  # type: ignore[arg-type]
            FakeKnown(),  # type: ignore[arg-type]
            client,
            ControllerSettings(worker_retries=1),
        )
        with pytest.raises(OpenAIError) as caught:
            await service.chat_completion(body(max_tokens=4), "c", "r")
    assert caught.value.status_code == 503
    assert sorted(set(attempts)) == ["w0", "w1"]


async def test_a_prompt_list_gives_one_choice_per_prompt(
    service: OpenAIService, fake: FakeWorker
) -> None:
    fake.by_prompt = {"a": snapshots(["a1", "a1 a2"]), "b": snapshots(["b1"], finish="length")}
    request = {"model": "m", "prompt": ["a", "b"], "max_tokens": 3}
    answer = await service.completion(CompletionRequest.model_validate(request), "cmpl-1", "r")
    assert isinstance(answer, Completion)
    assert [(c.index, c.text, c.finish_reason) for c in answer.choices] == [
        (0, "a1 a2", "stop"),
        (1, "b1", "length"),
    ]
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    assert [b["echo"] for b in fake.bodies("/worker_generate_stream")] == [False, False]

    stream = {**request, "stream": True, "stream_options": {"include_usage": True}}
    streamed = CompletionRequest.model_validate(stream)
    got = await events(await service.completion(streamed, "cmpl-2", "r"))
    assert got[-1] == "[DONE]"
    text: dict[int, str] = {0: "", 1: ""}
    finished = {}
    for chunk in got[:-2]:
        assert chunk["object"] == "text_completion"
        choice = chunk["choices"][0]
        assert choice["index"] not in finished
        text[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            finished[choice["index"]] = choice["finish_reason"]
    assert text == {0: "a1 a2", 1: "b1"}
    assert finished == {0: "stop", 1: "length"}
    assert got[-2]["usage"]["completion_tokens"] == 3


async def test_stream_options_without_stream_is_400(service: OpenAIService) -> None:
    with pytest.raises(OpenAIError) as caught:
        await service.chat_completion(body(stream_options={"include_usage": True}), "c", "r")
    assert caught.value.param == "stream_options"


async def test_one_structured_log_line_per_request(
    service: OpenAIService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.controller.openai_service")
    await service.chat_completion(body(max_tokens=4), "chatcmpl-7", "rid-7")
    with pytest.raises(OpenAIError):
        await service.chat_completion(body(model="nope"), "chatcmpl-8", "rid-8")
    lines = [r.getMessage() for r in caplog.records if "event=openai_request" in r.getMessage()]
    assert len(lines) == 2
    assert "id=chatcmpl-7 request_id=rid-7" in lines[0]
    for field in ("model=m", f"worker={WORKER}", "status=200", "prompt_tokens=5"):
        assert field in lines[0]
    assert "completion_tokens=2" in lines[0] and "ttft_ms=" in lines[0]
    assert "status=404" in lines[1]
    metrics = service.metrics.exposition().decode()
    assert (
        'camelchat_openai_requests_total{endpoint="chat.completions",status="200"} 1.0' in metrics
    )
    assert (
        'camelchat_openai_requests_total{endpoint="chat.completions",status="404"} 1.0' in metrics
    )
