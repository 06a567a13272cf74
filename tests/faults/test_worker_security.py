"""A model worker with keys configured, attacked over HTTP as a real process.

Without a key no data route of either protocol answers; the worker registers and heartbeats with
its worker token (every second by default); seeds that overflow are a 400 naming ``seed``; bodies
are bounded; and tokenising the largest body it admits does not stall ``/health`` or heartbeats.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.http_limits import DEFAULT_MAX_BODY_BYTES
from tests.support import ProcessGroup, start_worker_process, wait_until

USER_KEY = "user-key-for-the-worker-tests"
WORKER_TOKEN = "worker-token-for-the-worker-tests"
KEYED = {
    "CONTROLLER_API_KEYS": USER_KEY,
    "WORKER_TOKEN": WORKER_TOKEN,
    "ALLOW_UNAUTHENTICATED": "false",
}
AS_USER = {"Authorization": f"Bearer {USER_KEY}"}
GENERATE = {"prompt": "Hello", "max_new_tokens": 2, "temperature": 0}
TGI_GENERATE = {"inputs": "Hello", "parameters": {"max_new_tokens": 2}}

# (method, path, body) of every route but /health: FastChat's and TGI's, and the documents.
FASTCHAT_ROUTES = [
    ("POST", "/worker_generate_stream", GENERATE),
    ("POST", "/worker_generate", GENERATE),
    ("POST", "/worker_generate_completion_stream", GENERATE),
    ("POST", "/worker_generate_completion", GENERATE),
    ("POST", "/count_token", {"prompt": "Hello"}),
    ("POST", "/model_details", None),
    ("POST", "/worker_get_conv_template", None),
    ("POST", "/worker_get_status", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
]
TGI_ROUTES = [
    ("POST", "/", TGI_GENERATE),
    ("POST", "/generate", TGI_GENERATE),
    ("POST", "/generate_stream", TGI_GENERATE),
    ("POST", "/tokenize", {"inputs": "Hello"}),
    ("GET", "/info", None),
]


@dataclass
class FakeController:
    """Records the worker protocol calls it gets: (path, Authorization header, when)."""

    url: str = ""
    calls: list[tuple[str, str, float]] = field(default_factory=list)

    def of(self, path: str) -> list[tuple[str, str, float]]:
        return [c for c in self.calls if c[0] == path]


@pytest.fixture(scope="module")
def fake_controller() -> Iterator[FakeController]:
    record = FakeController()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            auth = self.headers.get("authorization") or ""
            record.calls.append((self.path, auth, time.monotonic()))
            body = json.dumps({"exist": True}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield record
    server.shutdown()
    server.server_close()


def start_keyed_worker(
    group: ProcessGroup, name: str, model_dir: Path, controller: str
) -> tuple[str, Any]:
    """A worker with keys, registering with ``controller`` at its default heartbeat interval."""
    launch = partial(group.start, name, env=KEYED)
    args = ("--model-names", "tiny", "--controller-address", controller)
    return start_worker_process(launch, model_dir, *args)


@pytest.fixture(scope="module")
def keyed_worker(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, fake_controller: FakeController
) -> Iterator[str]:
    with ProcessGroup(tmp_path_factory.mktemp("logs")) as group:
        url, _ = start_keyed_worker(group, "worker", tiny_model_dir, fake_controller.url)
        yield url


def request(url: str, method: str, path: str, body: Any, headers: dict | None = None) -> Any:
    return httpx.request(method, url + path, json=body, headers=headers, timeout=60)


def is_protocol_refusal(path: str, body: dict) -> bool:
    """A 401's body in the route's protocol: TGI's ``{"error", "error_type"}`` on TGI routes,
    FastChat's ``{"text", "error_code", "param"}`` elsewhere."""
    if path in {route[1] for route in TGI_ROUTES}:
        return body.get("error_type") == "authentication" and "error" in body
    return body.get("param") == "Authorization" and body.get("error_code") == 40101


@pytest.mark.parametrize(("method", "path", "body"), FASTCHAT_ROUTES + TGI_ROUTES)
def test_every_route_refuses_a_caller_without_a_key(
    keyed_worker: str, method: str, path: str, body: Any
) -> None:
    refused = request(keyed_worker, method, path, body)
    assert refused.status_code == 401, refused.text
    assert is_protocol_refusal(path, refused.json()), refused.text
    wrong = request(keyed_worker, method, path, body, {"Authorization": "Bearer guess"})
    assert wrong.status_code == 401
    for secret in (USER_KEY, WORKER_TOKEN):
        admitted = request(keyed_worker, method, path, body, {"Authorization": f"Bearer {secret}"})
        assert admitted.status_code == 200, admitted.text


def test_health_stays_open(keyed_worker: str) -> None:
    health = httpx.get(f"{keyed_worker}/health")
    assert health.status_code == 200
    assert health.json()["model_names"] == ["tiny"]


def test_registration_and_heartbeats_carry_the_worker_token_every_second(
    keyed_worker: str, fake_controller: FakeController
) -> None:
    assert wait_until(lambda: len(fake_controller.of("/receive_heart_beat")) >= 4, 15)
    registered = fake_controller.of("/register_worker")
    beats = fake_controller.of("/receive_heart_beat")
    assert registered
    assert {auth for _, auth, _ in registered + beats} == {f"Bearer {WORKER_TOKEN}"}
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(beats)]
    assert 0.7 < sorted(gaps)[len(gaps) // 2] < 1.5, gaps


def test_unregistering_carries_the_worker_token(
    tiny_model_dir: Path, tmp_path: Path, fake_controller: FakeController
) -> None:
    with ProcessGroup(tmp_path) as group:
        _, proc = start_keyed_worker(group, "leaving", tiny_model_dir, fake_controller.url)
        assert wait_until(
            lambda: any(auth for _, auth, _ in fake_controller.of("/register_worker")), 15
        )
        before = len(fake_controller.of("/unregister_worker"))
        proc.stop()
    gone = fake_controller.of("/unregister_worker")[before:]
    assert [auth for _, auth, _ in gone] == [f"Bearer {WORKER_TOKEN}"]


@pytest.mark.parametrize("seed", [2**63, 2**64, 10**30])
def test_an_overflowing_seed_is_a_400_naming_it(keyed_worker: str, seed: int) -> None:
    body = {**GENERATE, "temperature": 0.7, "seed": seed}
    for path in ("/worker_generate", "/worker_generate_stream"):
        answer = request(keyed_worker, "POST", path, body, AS_USER)
        assert answer.status_code == 400, answer.text
        assert answer.json()["param"] == "seed"
        assert answer.json()["text"].startswith("seed: ")
    tgi = {"inputs": "Hello", "parameters": {"do_sample": True, "seed": seed}}
    answer = request(keyed_worker, "POST", "/generate", tgi, AS_USER)
    assert answer.status_code == 422, answer.text
    assert "`seed`" in answer.json()["error"]
    largest = {**GENERATE, "temperature": 0.7, "seed": 2**63 - 1}
    assert request(keyed_worker, "POST", "/worker_generate", largest, AS_USER).status_code == 200


def test_bodies_over_the_limit_or_nested_too_deep_are_refused(keyed_worker: str) -> None:
    too_big = b'{"prompt": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}'
    headers = {**AS_USER, "content-type": "application/json"}
    answer = httpx.post(f"{keyed_worker}/count_token", content=too_big, headers=headers)
    assert answer.status_code == 413
    deep = b'{"prompt": "x", "stop": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = httpx.post(f"{keyed_worker}/worker_generate", content=deep, headers=headers)
    assert answer.status_code == 400


def test_health_and_heartbeats_answer_while_the_largest_prompt_is_counted(
    keyed_worker: str, fake_controller: FakeController
) -> None:
    """The largest /count_token the body limit admits takes seconds to tokenise; meanwhile
    /health answers well within the heartbeat interval and heartbeats keep coming."""
    prompt = "The quick brown fox jumps over the lazy dog. " * (DEFAULT_MAX_BODY_BYTES // 46)
    body = json.dumps({"prompt": prompt}).encode()
    assert len(body) <= DEFAULT_MAX_BODY_BYTES
    answers: list[httpx.Response] = []

    def count() -> None:
        headers = {**AS_USER, "content-type": "application/json"}
        answers.append(
            httpx.post(f"{keyed_worker}/count_token", content=body, headers=headers, timeout=300)
        )

    big = threading.Thread(target=count)
    started = time.monotonic()
    big.start()
    latencies: list[float] = []
    time.sleep(0.3)  # the body is sent and being tokenised
    while big.is_alive():
        sent = time.monotonic()
        assert httpx.get(f"{keyed_worker}/health", timeout=30).status_code == 200
        latencies.append(time.monotonic() - sent)
        time.sleep(0.15)
    finished = time.monotonic()
    big.join()
    assert max(latencies) < 1.0, latencies
    assert len(latencies) >= 5, "the big request ended before /health could be sampled"
    time.sleep(1.5)  # the first heartbeat after it
    beats = [t for _, _, t in fake_controller.of("/receive_heart_beat") if t >= started - 1.5]
    assert any(started < t < finished for t in beats), (beats, started, finished)
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < 2.0, gaps  # every second, as when idle
    assert answers[0].status_code == 200
    assert answers[0].json()["count"] > len(prompt) // 10
