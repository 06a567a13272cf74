"""The OpenAI-compatible API on real processes (controller + tiny worker), driven by the official
``openai`` SDK and raw httpx. The tiny model writes gibberish, so only structure is checked."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import redis
from fastapi.responses import JSONResponse, Response

from shared.worker_protocol import encode_chunk
from tests.controller.stand_in import StandInWorker, one_snapshot
from tests.support import ServiceProcess, free_port, post_json_text, post_streamed, wait_until

MODEL = "tiny"
USER = [{"role": "user", "content": "Hi"}]


@dataclass
class Stack:
    url: str
    controller: ServiceProcess
    worker: ServiceProcess
    worker_url: str


def served_models(url: str) -> list[str]:
    return httpx.post(f"{url}/list_models").json()["models"]


@pytest.fixture(scope="module")
def stack(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One controller and one tiny worker for the module (a worker takes seconds to start)."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    logs = tmp_path_factory.mktemp("openai-stack")
    port, worker_port = free_port(), free_port()
    url, worker_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{worker_port}"
    controller = ServiceProcess(
        "services.controller",
        ["--port", str(port), "--redis-url", redis_url, "--redis-key-prefix", prefix],
        logs / "controller.log",
    ).start()
    worker = ServiceProcess(
        "services.model_worker",
        [
            "--port",
            str(worker_port),
            "--model-path",
            str(tiny_model_dir),
            "--controller-address",
            url,
            "--heart-beat-interval",
            "0.5",
            "--model-names",
            MODEL,
        ],
        logs / "worker.log",
    )
    try:
        controller.wait_http(f"{url}/test_connection")
        worker.start().wait_http(f"{worker_url}/health", timeout=120)
        assert wait_until(lambda: MODEL in served_models(url), 15)
        yield Stack(url, controller, worker, worker_url)
    finally:
        worker.stop()
        controller.stop()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)


def sdk(url: str, api_key: str = "unused", max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=max_retries, timeout=30)


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict:
    """OpenAI's error object, as the SDK hands it back."""
    return {"message": message, "type": kind, "param": param, "code": code}


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of the controller's /metrics (0 when absent)."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    wanted = f"{name}{{{inner}}}" if inner else name
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.rsplit(" ", 1)[0] == wanted:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---- happy paths ------------------------------------------------------------------------


def test_models_list(stack: Stack) -> None:
    models = sdk(stack.url).models.list()
    ids = [m.id for m in models.data]
    assert MODEL in ids
    card = next(m for m in models.data if m.id == MODEL)
    assert card.object == "model" and card.created > 0 and card.owned_by == "camel-chat"
    assert sdk(stack.url).models.retrieve(MODEL).id == MODEL


def test_chat_completion(stack: Stack) -> None:
    answer = sdk(stack.url).chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, *USER],
        max_tokens=8,
        temperature=0,
        seed=1,
    )
    assert answer.id.startswith("chatcmpl-")
    assert answer.object == "chat.completion"
    assert answer.model == MODEL
    (choice,) = answer.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_without_max_tokens_fills_the_rest_of_the_context(stack: Stack) -> None:
    answer = sdk(stack.url).chat.completions.create(model=MODEL, messages=USER, temperature=0)
    usage = answer.usage
    assert usage is not None
    # The tiny model's context is 256 tokens; the prompt is never truncated to make room.
    assert usage.prompt_tokens + usage.completion_tokens <= 256
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_chat_stream_with_usage(stack: Stack) -> None:
    chunks = list(
        sdk(stack.url).chat.completions.create(
            model=MODEL,
            messages=USER,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(chunks) >= 4  # role, content..., finish, usage
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk"
        assert chunk.created > 0 and chunk.model == MODEL
    *with_choices, usage_chunk = chunks
    first, last = with_choices[0], with_choices[-1]
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    assert last.choices[0].finish_reason in ("stop", "length")
    assert last.choices[0].delta.content is None and last.choices[0].delta.role is None
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert 1 <= usage_chunk.usage.completion_tokens <= 12
    assert all(c.usage is None for c in with_choices)


def test_raw_sse_framing_and_request_id(stack: Stack) -> None:
    body = {"model": MODEL, "messages": USER, "max_tokens": 6, "stream": True}
    response = post_streamed(f"{stack.url}/v1/chat/completions", body, "client-req-42", 30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"] == "client-req-42"
    raw = response.content.decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = raw.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    for payload in payloads:
        assert set(payload) == {"id", "object", "created", "model", "choices"}  # no usage key
        (choice,) = payload["choices"]
        assert "finish_reason" in choice
    assert [p["choices"][0]["finish_reason"] is None for p in payloads].count(False) == 1
    assert payloads[-1]["choices"][0]["delta"] == {}
    log = stack.controller.logs()
    assert re.search(r"event=openai_request id=chatcmpl-\w+ request_id=client-req-42 ", log)
    # Forwarded: the worker's own request log carries the same id.
    assert wait_until(lambda: "id=client-req-42 " in stack.worker.logs(), 5)


def test_completions_string_and_list_prompt(stack: Stack) -> None:
    client = sdk(stack.url)
    one = client.completions.create(model=MODEL, prompt="Hello", max_tokens=5, echo=True)
    assert one.object == "text_completion" and one.id.startswith("cmpl-")
    assert one.choices[0].text.startswith("Hello")
    assert one.usage is not None and 1 <= one.usage.completion_tokens <= 5

    many = client.completions.create(model=MODEL, prompt=["a", "b", "c"], max_tokens=4)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") for c in many.choices)
    assert many.usage is not None and many.usage.completion_tokens <= 12

    default = client.completions.create(model=MODEL, prompt="x", temperature=0)
    assert default.usage is not None and default.usage.completion_tokens <= 16  # OpenAI's default


def test_completions_stream(stack: Stack) -> None:
    chunks = list(
        sdk(stack.url).completions.create(
            model=MODEL,
            prompt=["a", "b"],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *text_chunks, usage_chunk = chunks
    assert all(c.object == "text_completion" for c in chunks)
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in text_chunks}
    assert set(finishes) == {0, 1}
    done = [c for c in text_chunks if c.choices[0].finish_reason]
    assert sorted(c.choices[0].index for c in done) == [0, 1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None


def test_a_warm_request_makes_one_worker_call(stack: Stack) -> None:
    client = sdk(stack.url)
    client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2)  # warm
    calls = "camelchat_openai_worker_calls_total"
    paths = (
        "/worker_generate_stream",
        "/count_token",
        "/worker_get_conv_template",
        "/model_details",
    )
    before = {p: metric(stack.url, calls, path=p) for p in paths}
    client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2)
    after = {p: metric(stack.url, calls, path=p) for p in before}
    assert {p: after[p] - before[p] for p in before} == {
        "/worker_generate_stream": 1,
        "/count_token": 0,
        "/worker_get_conv_template": 0,
        "/model_details": 0,
    }


# ---- errors -----------------------------------------------------------------------------


def test_unknown_model_is_not_found(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(stack.url).chat.completions.create(model="no-such-model", messages=USER)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"temperature": 5}, "temperature"), ({"max_tokens": -1}, "max_tokens"), ({"n": 3}, "n")],
)
def test_bad_parameters_are_bad_requests(stack: Stack, fields: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack.url).chat.completions.create(model=MODEL, messages=USER, **fields)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/chat/completions", {"seed": 2**63}, "seed"),
        ("/v1/chat/completions", {"max_tokens": 10**30}, "max_tokens"),
        ("/v1/completions", {"max_tokens": 2**63}, "max_tokens"),
        ("/v1/completions", {"stop_token_ids": [2**40]}, "stop_token_ids[0]"),
    ],
)
def test_integers_too_large_for_a_worker_are_400_naming_the_field(
    stack: Stack, path: str, fields: dict, param: str
) -> None:
    base = {"model": MODEL, "messages": USER} if "chat" in path else {"model": MODEL, "prompt": "x"}
    response = httpx.post(f"{stack.url}{path}", json={**base, **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error")
    assert error["message"].startswith(f"{param}: ")


def test_malformed_json_and_context_overflow_are_400(stack: Stack) -> None:
    response = post_json_text(f"{stack.url}/v1/chat/completions", b'{"model": ')
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack.url).chat.completions.create(model=MODEL, messages=USER, max_tokens=256)
    assert caught.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack.url).completions.create(model=MODEL, prompt="x", suffix="y")
    assert caught.value.param == "suffix"


def test_api_keys_guard_every_route_but_the_health_checks(controller: Callable[..., str]) -> None:
    url = controller("--api-keys", "k1,k2")  # the old spelling of --controller-api-keys
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(url, api_key="wrong").models.list()
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert sdk(url, api_key="k2").models.list().data == []
    missing = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": USER})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    refused = httpx.post(f"{url}/list_models")  # the worker protocol too, in its own shape
    assert refused.status_code == 401 and refused.json()["error_code"] == 40101
    keyed = httpx.post(f"{url}/list_models", headers={"Authorization": "Bearer k1"})
    assert keyed.json() == {"models": []}
    assert httpx.get(f"{url}/test_connection").text == "success"
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


@pytest.fixture
def stand_in(stack: Stack) -> Iterator[Callable[..., StandInWorker]]:
    started: list[StandInWorker] = []

    def start(generate: Callable[[], Response], model: str) -> StandInWorker:
        double = StandInWorker([model], generate).start()
        started.append(double)
        return double.join(stack.url)

    yield start
    for double in started:
        double.leave(stack.url)
        double.stop()


def test_sdk_retries_on_503_when_the_worker_is_gone(
    stack: Stack, stand_in: Callable[..., StandInWorker]
) -> None:
    double = stand_in(one_snapshot, "doomed")
    answer = sdk(stack.url).chat.completions.create(model="doomed", messages=USER, max_tokens=2)
    assert answer.choices[0].message.content == "ok"
    double.stop()  # killed without a goodbye: the registry still lists it until it expires

    status = {"endpoint": "chat.completions", "status": "503"}
    before = metric(stack.url, "camelchat_openai_requests_total", **status)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(stack.url).chat.completions.create(model="doomed", messages=USER, max_tokens=2)
    assert caught.value.status_code == 503
    assert caught.value.code == "worker_unavailable"
    # It refused the connection: it left routing at once, and no other worker serves the model.
    workers = httpx.get(f"{stack.url}/list_workers").json()["workers"]
    assert double.address not in [w["name"] for w in workers]

    # The model is still known: 503 (the SDK retries), not 404.
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(stack.url, max_retries=2).chat.completions.create(
            model="doomed", messages=USER, max_tokens=2
        )
    assert caught.value.status_code == 503
    assert caught.value.code == "model_unavailable"
    assert metric(stack.url, "camelchat_openai_requests_total", **status) - before == 4


def fails_mid_stream() -> Response:
    first = {"text": "par", "error_code": 0, "usage": None, "finish_reason": None}
    error = {"text": "Out of memory while generating", "error_code": 50002}
    return Response(
        encode_chunk(first) + encode_chunk(error), media_type="application/octet-stream"
    )


def test_an_error_inside_a_stream_raises_in_the_sdk(
    stack: Stack, stand_in: Callable[..., StandInWorker]
) -> None:
    stand_in(fails_mid_stream, "fragile")
    stream = sdk(stack.url).chat.completions.create(
        model="fragile", messages=USER, max_tokens=4, stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "par"]
    assert caught.value.message == "Out of memory while generating"
    assert caught.value.body == error_body(
        "Out of memory while generating", "server_error", "50002"
    )


def overloaded() -> Response:
    return JSONResponse(
        {"text": "Too many requests are waiting.", "error_code": 42903},
        status_code=429,
        headers={"Retry-After": "0"},
    )


def test_sdk_retries_on_429_and_sees_retry_after(
    stack: Stack, stand_in: Callable[..., StandInWorker]
) -> None:
    double = stand_in(overloaded, "overloaded")
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(stack.url, max_retries=2).chat.completions.create(
            model="overloaded", messages=USER, max_tokens=4
        )
    assert double.calls == 3
    assert caught.value.response.headers["retry-after"] == "0"
    assert caught.value.code == "engine_overloaded"
    assert caught.value.body == error_body(
        "Too many requests are waiting.", "rate_limit_error", "engine_overloaded"
    )
