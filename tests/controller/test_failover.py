"""A request whose worker fails before the first token goes to another worker: on the OpenAI API
and the worker protocol's proxy routes, with worker doubles failing on demand, and with real
workers, one of them SIGKILLed under load (the heavier version is in tests/faults)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.responses import JSONResponse, Response

from shared.worker_protocol import encode_chunk, iter_chunks
from tests.controller.kill_under_load import kill_under_load
from tests.controller.stand_in import StandInWorker
from tests.support import wait_until

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def ends_before_any_output() -> Response:
    return Response(b"", media_type="application/octet-stream")


def unavailable() -> Response:
    return JSONResponse({"text": "shutting down", "error_code": 50001}, status_code=503)


def fails_first() -> Response:
    chunk = {"text": "Internal error while generating: boom", "error_code": 50001}
    return Response(encode_chunk(chunk), media_type="application/octet-stream")


@pytest.fixture
def pair(controller: Callable[..., str]) -> Iterator[Callable[..., tuple]]:
    """A controller and two doubles serving "m": a healthy one, and one answering ``generate``."""
    started: list[StandInWorker] = []

    def start(generate: Callable[[], Response]) -> tuple:
        url = controller()
        healthy, failing = StandInWorker(["m"]).start(), StandInWorker(["m"], generate).start()
        started.extend([healthy, failing])
        return url, healthy.join(url), failing.join(url)

    yield start
    for double in started:
        double.stop()


def listed(url: str) -> list[str]:
    return [w["name"] for w in httpx.get(f"{url}/list_workers").json()["workers"]]


def chat(url: str, **fields: object) -> str:
    """The reply's text, streamed or not; fails the test on an error."""
    body = {**CHAT, **fields}
    if not fields.get("stream"):
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["choices"][0]["message"]["content"]
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as answer:
        assert answer.status_code == 200, answer.read()
        text = answer.read().decode()
    assert '"error"' not in text, text
    return "ok" if '"content":"ok"' in text else text


@pytest.mark.parametrize("generate", [ends_before_any_output, unavailable, fails_first])
def test_a_failure_before_the_first_chunk_is_retried_on_another_worker(
    pair: Callable[..., tuple], generate: Callable[[], Response]
) -> None:
    url, healthy, failing = pair(generate)
    for i in range(6):
        assert chat(url, stream=bool(i % 2)) == "ok"
        body = {"model": "m", "prompt": "x"}
        with httpx.stream("POST", f"{url}/worker_generate_stream", json=body) as answer:
            chunks = list(iter_chunks(answer.iter_bytes()))
        assert chunks[-1]["text"] == "ok", chunks
    assert failing.calls > 0  # it was tried, and its requests went on to the healthy one
    assert healthy.calls == 12
    assert failing.address in listed(url)  # it answered: it stays routable


def test_the_forwarded_routes_retry_too(pair: Callable[..., tuple]) -> None:
    url, healthy, failing = pair(unavailable)
    for _ in range(4):
        answer = httpx.post(f"{url}/worker_generate", json={"model": "m", "prompt": "x"})
        assert (answer.status_code, answer.json()["text"]) == (200, "ok")
    assert failing.calls > 0 and healthy.calls == 4


def test_a_worker_that_refuses_connections_leaves_routing_and_loses_no_request(
    pair: Callable[..., tuple],
) -> None:
    url, healthy, failing = pair(ends_before_any_output)
    failing.stop()  # dead: connections refused, no more heartbeats
    started = time.monotonic()
    for i in range(4):
        assert chat(url, stream=bool(i % 2)) == "ok"
    assert listed(url) == [healthy.address]
    assert time.monotonic() - started < 2  # at once, not when its heartbeats expire (3 s)


def test_a_worker_killed_under_load_loses_only_streams_under_way(
    controller: Callable[..., str], worker: Callable, tiny_model_dir: Path
) -> None:
    url = controller()
    procs = [worker(tiny_model_dir, url, "--model-names", "tiny", wait=False) for _ in range(2)]
    for address, proc in procs:
        proc.wait_http(f"{address}/health", timeout=120)
    assert wait_until(lambda: len(listed(url)) == 2, 15)
    outcome = kill_under_load(url, "tiny", procs[0][1], streams=8, spread=2.0, kill_after=0.8)
    print(outcome.summary())
    assert outcome.failed_before_first_token == [], outcome.summary()
    assert wait_until(lambda: listed(url) == [procs[1][0]], 3)


def test_a_worker_that_takes_a_request_and_never_answers_is_passed_over(
    controller: Callable[..., str],
) -> None:
    """Its host went away behind a kept-alive connection: no connect happens, so only the
    response timeout notices."""

    def silent() -> Response:
        time.sleep(4)
        return ends_before_any_output()

    url = controller(env={"CONTROLLER_WORKER_RESPONSE_TIMEOUT": "1"})
    healthy, hung = StandInWorker(["m"]).start(), StandInWorker(["m"], silent).start()
    try:
        healthy.join(url), hung.join(url)
        assert [chat(url, stream=True) for _ in range(4)] == ["ok"] * 4
        assert hung.calls >= 1
    finally:
        healthy.stop(), hung.stop()
