"""Controller and model workers as real processes on 127.0.0.1, talking HTTP and Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from shared.redis_keys import RedisKeys
from shared.worker_protocol import iter_chunks
from tests.support import free_port, post_json_text, post_streamed, wait_until

PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def models(controller_url: str) -> list[str]:
    return httpx.post(f"{controller_url}/list_models").json()["models"]


def stream(url: str, body: dict) -> tuple[int, list[dict]]:
    with httpx.stream("POST", url, json=body, timeout=60) as response:
        return response.status_code, list(iter_chunks(response.iter_bytes()))


@pytest.fixture
def running(controller: Callable[..., str], worker: Callable, tiny_model_dir: Path) -> tuple:
    controller_url = controller()
    worker_url, proc = worker(tiny_model_dir, controller_url, "--model-names", "tiny,tiny-alias")
    assert wait_until(lambda: "tiny" in models(controller_url), 15)
    return controller_url, worker_url, proc


def test_worker_registers_and_is_dispatched_to(running: tuple) -> None:
    controller_url, worker_url, _ = running
    assert models(controller_url) == ["tiny", "tiny-alias"]
    answer = httpx.post(f"{controller_url}/get_worker_address", json={"model": "tiny"}).json()
    assert answer == {"address": worker_url}
    status = httpx.post(f"{controller_url}/worker_get_status").json()
    assert status["model_names"] == ["tiny", "tiny-alias"]
    assert status["speed"] == 1.0
    workers = httpx.get(f"{controller_url}/list_workers").json()["workers"]
    assert [w["name"] for w in workers] == [worker_url]
    assert httpx.get(f"{controller_url}/test_connection").text == "success"


def test_stream_proxy_relays_nul_framed_snapshots(running: tuple) -> None:
    controller_url, _, _ = running
    body = {"model": "tiny", "prompt": PROMPT, "max_new_tokens": 8, "temperature": 0}
    code, chunks = stream(f"{controller_url}/worker_generate_stream", body)
    assert code == 200
    assert len(chunks) >= 2
    assert chunks[-1]["finish_reason"] in {"stop", "length"}
    assert chunks[-1]["usage"]["completion_tokens"] <= 8
    assert all(chunk["text"].startswith(PROMPT) for chunk in chunks)  # echo defaults to true
    direct = httpx.post(f"{controller_url}/worker_generate", json=body, timeout=60).json()
    assert direct["text"] == chunks[-1]["text"]


def test_unknown_model_is_a_clear_error_not_a_crash(running: tuple) -> None:
    controller_url, _, _ = running
    code, chunks = stream(
        f"{controller_url}/worker_generate_stream", {"model": "nope", "prompt": "x"}
    )
    assert code == 200
    assert chunks == [{"text": "No worker is serving model 'nope'.", "error_code": 50005}]
    response = httpx.post(
        f"{controller_url}/worker_generate", json={"model": "nope", "prompt": "x"}
    )
    assert response.status_code == 404
    assert response.json() == {
        "text": "No worker is serving model 'nope'.",
        "error_code": 50005,
        "param": "model",
    }
    address = httpx.post(f"{controller_url}/get_worker_address", json={"model": "nope"}).json()
    assert address == {"address": ""}


def test_worker_validation_errors_pass_through_the_proxy(running: tuple) -> None:
    controller_url, _, _ = running
    body = {"model": "tiny", "prompt": "x", "max_new_tokens": -5}
    response = httpx.post(f"{controller_url}/worker_generate_stream", json=body)
    assert response.status_code == 400
    assert response.json()["param"] == "max_new_tokens"


def test_a_killed_worker_leaves_routing_within_seconds(running: tuple) -> None:
    controller_url, _, proc = running
    proc.kill()
    started = time.monotonic()
    assert wait_until(lambda: models(controller_url) == [], 10)
    # expiration is 3 s (the default; the original took 90-180 s)
    assert time.monotonic() - started < 5
    _, chunks = stream(f"{controller_url}/worker_generate_stream", {"model": "tiny", "prompt": "x"})
    assert chunks[0]["error_code"] == 50005


def test_a_cleanly_stopped_worker_leaves_routing_at_once(running: tuple) -> None:
    controller_url, _, proc = running
    proc.stop()  # SIGTERM: the worker unregisters on its way out
    assert models(controller_url) == []


def test_registry_survives_a_controller_restart_and_is_shared(
    controller: Callable[..., str], running: tuple
) -> None:
    _, worker_url, _ = running
    second_url = controller()  # same Redis and key prefix
    assert models(second_url) == ["tiny", "tiny-alias"]
    answer = httpx.post(f"{second_url}/get_worker_address", json={"model": "tiny-alias"}).json()
    assert answer == {"address": worker_url}


def test_worker_reregisters_when_the_controller_forgets_it(
    running: tuple, redis_url: str, redis_prefix: str
) -> None:
    controller_url, worker_url, _ = running
    keys = RedisKeys(redis_prefix)
    redis.Redis.from_url(redis_url).delete(keys.worker(worker_url))
    assert models(controller_url) == []
    # The next heartbeat answers exist=false and the worker registers again.
    assert wait_until(lambda: models(controller_url) == ["tiny", "tiny-alias"], 10)


def test_worker_started_before_the_controller_registers_when_it_comes_up(
    controller: Callable[..., str], worker: Callable, tiny_model_dir: Path
) -> None:
    port = free_port()
    late_url = f"http://127.0.0.1:{port}"
    worker(tiny_model_dir, late_url)
    controller_url = controller(port=port)
    assert controller_url == late_url
    assert wait_until(lambda: models(controller_url) == ["tiny-llama"], 15)


def test_a_worker_that_refuses_connections_leaves_routing_at_once(running: tuple) -> None:
    controller_url, worker_url, proc = running
    proc.kill()  # no goodbye: its registration would last until it expires (3 s here)
    _, chunks = stream(f"{controller_url}/worker_generate_stream", {"model": "tiny", "prompt": "x"})
    assert chunks[0]["error_code"] == 50006
    assert worker_url in chunks[0]["text"]
    assert models(controller_url) == []  # at once, not when its heartbeats expire


def test_refresh_drops_the_workers_that_do_not_answer(running: tuple) -> None:
    controller_url, _, proc = running
    proc.kill()
    httpx.post(f"{controller_url}/refresh_all_workers").raise_for_status()
    assert models(controller_url) == []


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/register_worker", {"worker_name": "not-a-url"}, "worker_name"),
        ("/register_worker", {"check_heart_beat": True}, "worker_name"),
        ("/receive_heart_beat", {"worker_name": "http://x", "queue_length": -1}, "queue_length"),
        ("/get_worker_address", {}, "model"),
        ("/worker_generate_stream", {"prompt": "x"}, "model"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    controller: Callable[..., str], path: str, body: dict, param: str
) -> None:
    controller_url = controller()
    response = httpx.post(f"{controller_url}{path}", json=body)
    assert response.status_code == 400
    assert response.json()["param"] == param
    assert param in response.json()["text"]


def test_malformed_json_is_a_400(controller: Callable[..., str]) -> None:
    controller_url = controller()
    response = post_json_text(f"{controller_url}/register_worker", b"{not json")
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["text"]


def test_registration_of_an_address_that_does_not_answer_is_refused(
    controller: Callable[..., str],
) -> None:
    controller_url = controller()
    dead = f"http://127.0.0.1:{free_port()}"
    body = {"worker_name": dead, "check_heart_beat": False}
    response = httpx.post(f"{controller_url}/register_worker", json=body)
    assert response.status_code == 400
    assert response.json()["param"] == "worker_name"
    assert dead in response.json()["text"]
    assert models(controller_url) == []


def test_a_claimed_status_is_never_routed_and_an_address_that_never_answers_is_dropped(
    controller: Callable[..., str],
) -> None:
    """FastChat's model_worker registers (with its status) before it listens: the address is
    held, serving nothing, until it answers its own status; this one never does."""
    controller_url = controller("--pending-worker-grace", "1.5", expiration=30)
    dead = f"http://127.0.0.1:{free_port()}"
    malformed = {"worker_name": dead, "worker_status": {"model_names": "ghost"}}
    refused = httpx.post(f"{controller_url}/register_worker", json=malformed)
    assert refused.status_code == 400 and refused.json()["param"] == "worker_status"
    claimed = {"model_names": ["ghost"], "speed": 1}
    body = {"worker_name": dead, "check_heart_beat": False, "worker_status": claimed}
    assert httpx.post(f"{controller_url}/register_worker", json=body).status_code == 200
    workers = httpx.get(f"{controller_url}/list_workers").json()["workers"]
    assert [(w["name"], w["model_names"]) for w in workers] == [(dead, [])]
    assert models(controller_url) == []

    def gone() -> bool:
        return httpx.get(f"{controller_url}/list_workers").json()["workers"] == []

    assert wait_until(gone, 30)


def test_request_id_is_carried_to_the_worker_log(running: tuple) -> None:
    controller_url, _, proc = running
    body = {"model": "tiny", "prompt": PROMPT, "max_new_tokens": 2}
    headers = {"X-Request-Id": "req-from-the-client-42"}
    httpx.post(f"{controller_url}/worker_generate", json=body, headers=headers, timeout=60)
    post_streamed(f"{controller_url}/worker_generate_stream", body, "req-streamed-43")
    assert wait_until(lambda: "id=req-streamed-43" in proc.logs(), 5)
    assert "id=req-from-the-client-42" in proc.logs()
