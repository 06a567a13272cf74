"""The gateway (``python -m services.gateway``: Debian's nginx) in front of a real controller and
tiny model worker: the public API and a streamed chat through it, streams not held back,
websocket upgrades, body limits, connection and rate limits (429), and its daily log."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.gateway.config import find_nginx
from tests.gateway.stand_in import StandIn, stand_in
from tests.support import (
    REPO_ROOT,
    ProcessGroup,
    free_port,
    own_key_prefix,
    wait_listed,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    find_nginx() is None, reason="nginx is missing (apt-get install nginx-light; make up does it)"
)

MODEL = "tiny-llama"


@dataclass
class Gateways:
    controller: str
    # api: the controller, web UI: the stand-in.
    main: str
    # api and web UI: the stand-in; two requests in progress per client at most.
    narrow: str
    # api and web UI: the stand-in; one request a minute per client, one more at once.
    slow: str
    upstream: StandIn
    logs: Path


def start_gateway(group: ProcessGroup, name: str, webui: str, api: str, *extra: str) -> str:
    port = free_port()
    args = ["--port", str(port), "--webui-url", webui, "--api-url", api, *extra]
    group.start(name, "services.gateway", *args)
    url = f"http://127.0.0.1:{port}"
    group.processes[name].wait_http(f"{url}/gateway-health", timeout=30)
    return url


@pytest.fixture(scope="module")
def gateways(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateways]:
    root = tmp_path_factory.mktemp("gateway")
    logs = root / "logs"
    env = {"REDIS_URL": redis_url, "LOG_DIR": str(logs), "LOG_TO_FILE": "true"}
    with (
        own_key_prefix(redis_url) as prefix,
        stand_in() as upstream,
        ProcessGroup(root, {**env, "REDIS_KEY_PREFIX": prefix}) as group,
    ):
        controller = group.start_controller()
        group.start_model_worker("worker", tiny_model_dir, MODEL, controller)
        wait_listed(controller, MODEL)
        main = start_gateway(group, "gateway", upstream.url, controller)
        narrow = start_gateway(
            group, "narrow", upstream.url, upstream.url, "--conn-per-ip", "2", "--log-name", "n"
        )
        slow = start_gateway(
            group, "slow", upstream.url, upstream.url, "--rate", "1r/m", "--rate-burst", "1"
        )
        yield Gateways(controller, main, narrow, slow, upstream, logs)


def sse_events(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def test_the_public_api_and_a_streamed_chat_pass_through(gateways: Gateways) -> None:
    listed = httpx.get(f"{gateways.main}/v1/models", timeout=10)
    assert listed.status_code == 200, listed.text
    assert MODEL in [m["id"] for m in listed.json()["data"]]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", f"{gateways.main}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert {chunk["model"] for chunk in chunks} == {MODEL}
    # The same question, not streamed: one JSON answer.
    whole = httpx.post(
        f"{gateways.main}/v1/chat/completions", json={**body, "stream": False}, timeout=60
    )
    assert whole.status_code == 200 and whole.json()["object"] == "chat.completion"


def test_the_api_answers_bad_input_through_the_gateway_naming_the_field(
    gateways: Gateways,
) -> None:
    answer = httpx.post(
        f"{gateways.main}/v1/chat/completions", json={"model": MODEL, "messages": "x"}, timeout=10
    )
    assert answer.status_code == 400 and "messages" in answer.text


@pytest.mark.parametrize("path", ["/v1/stream", "/stream"])
def test_streams_reach_the_client_as_they_are_written(gateways: Gateways, path: str) -> None:
    """The upstream sends its second event only after the client has read the first, through
    the gateway: a gateway that held the stream back would make it give up."""
    upstream = gateways.upstream
    upstream.first_event_seen.clear()
    base = gateways.narrow if path.startswith("/v1/") else gateways.main
    with httpx.stream("GET", f"{base}{path}", timeout=120) as response:
        events = sse_events(response)
        assert next(events) == "first"
        upstream.first_event_seen.set()
        assert list(events) == ["second", "[DONE]"]
    assert not upstream.gave_up


def test_a_websocket_upgrade_passes_through_to_the_web_ui(gateways: Gateways) -> None:
    host, port = gateways.main.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"GET /queue/join HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(b"hello over the upgraded connection")
        echoed = b""
        while len(echoed) < len(b"hello over the upgraded connection"):
            echoed += sock.recv(4096)
        assert echoed == b"HELLO OVER THE UPGRADED CONNECTION"
    assert gateways.upstream.last_headers["Upgrade"] == "websocket"


def test_only_the_public_api_reaches_the_controller(gateways: Gateways) -> None:
    """The worker protocol (/list_models, /register_worker ...) is not behind the gateway."""
    assert httpx.post(f"{gateways.controller}/list_models", timeout=10).status_code == 200
    answer = httpx.post(f"{gateways.main}/list_models", timeout=10)
    assert answer.status_code != 200
    assert httpx.get(f"{gateways.main}/", timeout=10).text == "stand-in web UI"
    forwarded = gateways.upstream.last_headers
    assert forwarded["X-Forwarded-For"] == "127.0.0.1" and forwarded["X-Real-IP"] == "127.0.0.1"


def test_bodies_over_the_limit_are_refused_and_large_ones_under_it_pass(
    gateways: Gateways,
) -> None:
    too_big = b"x" * (8 * 1024 * 1024 + 1)
    refused = httpx.post(f"{gateways.main}/v1/chat/completions", content=too_big, timeout=60)
    assert refused.status_code == 413
    # 1 MiB: over nginx's in-memory buffer, so it goes through its temporary folder first.
    text = "word " * (1024 * 1024 // 5)
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": -1}
    answer = httpx.post(f"{gateways.main}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400 and "max_tokens" in answer.text, answer.text


def test_more_requests_at_once_than_allowed_per_client_get_429(gateways: Gateways) -> None:
    upstream = gateways.upstream
    upstream.release_hung.clear()
    results: list[int] = []

    def hang() -> None:
        results.append(httpx.get(f"{gateways.narrow}/v1/hang", timeout=120).status_code)

    threads = [threading.Thread(target=hang) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in threads:  # both are in progress at the upstream
            assert upstream.hanging.acquire(timeout=60)
        assert httpx.get(f"{gateways.narrow}/", timeout=10).status_code == 429
    finally:
        upstream.release_hung.set()
        for thread in threads:
            thread.join(60)
    assert results == [200, 200]
    assert httpx.get(f"{gateways.narrow}/", timeout=10).status_code == 200


def test_requests_over_the_rate_get_429(gateways: Gateways) -> None:
    # One a minute, one more at once: the third request in a row is refused.
    codes = [httpx.get(f"{gateways.slow}/", timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    # The gateway's own health check is never limited.
    assert httpx.get(f"{gateways.slow}/gateway-health", timeout=10).status_code == 200


def test_every_request_is_in_the_gateways_daily_log(gateways: Gateways) -> None:
    httpx.get(f"{gateways.main}/v1/models", timeout=10)
    log = (gateways.logs / "gateway.log").read_text()
    assert 'event=http_access client=127.0.0.1 method=GET uri="/v1/models" status=200' in log
    assert "service=gateway" in log
    assert (gateways.logs / "n.log").exists()  # --log-name
    controller_log = (gateways.logs / "controller.log").read_text()
    assert "service=controller" in controller_log


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--rate", "lots"], "--rate"),
        (["--port", "0"], "--port"),
        (["--webui-url", "ftp://example"], "GATEWAY_WEBUI_URL"),
        (["--nginx", "/no/such/nginx"], "nginx is not installed"),
    ],
)
def test_bad_settings_stop_it_with_a_message_naming_them(args: list[str], named: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway", "--port", str(free_port()), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and named in result.stderr, result.stderr


def test_nginx_goes_when_its_launcher_is_killed(tmp_path: Path) -> None:
    """SIGTERM stops nginx through the launcher; even SIGKILL leaves no nginx behind."""
    webui = f"http://127.0.0.1:{free_port()}"
    with ProcessGroup(tmp_path) as group:
        for name in ("term", "kill"):
            run_dir = tmp_path / name
            args = ["--run-dir", str(run_dir), "--api-url", webui]
            start_gateway(group, name, webui, webui, *args)
            master = int((run_dir / "nginx.pid").read_text())
            process = group.processes[name]
            assert process.proc is not None
            if name == "term":
                process.stop()
            else:
                process.kill()
            assert wait_until(lambda pid=master: gone(pid), 30), name


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for whoever adopted it counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status
