"""Attacks on a keyed controller (issue #13), each refused: a fake worker registering to receive
users' prompts, a caller-supplied worker status, the worker protocol and /metrics without a key,
a live worker unregistered by a stranger."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.controller.stand_in import StandInWorker
from tests.support import wait_until

USER_KEY, WORKER_TOKEN = "user-key-1", "worker-token-1"
KEYED = {
    "CONTROLLER_API_KEYS": USER_KEY,
    "WORKER_TOKEN": WORKER_TOKEN,
    "ALLOW_UNAUTHENTICATED": "false",
}
USER = {"Authorization": f"Bearer {USER_KEY}"}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "a secret"}], "max_tokens": 2}


@pytest.fixture
def doubles() -> Iterator[Callable[..., StandInWorker]]:
    started: list[StandInWorker] = []

    def start(*models: str, speed: float = 1.0) -> StandInWorker:
        double = StandInWorker(list(models), speed=speed).start()
        started.append(double)
        return double

    yield start
    for double in started:
        double.stop()


@pytest.fixture
def keyed(controller: Callable[..., str], doubles: Callable[..., StandInWorker]) -> tuple:
    """A controller with keys and a worker token, and an honest worker of "tiny" joined with it."""
    url = controller(env=KEYED)
    honest = doubles("tiny").join(url, WORKER_TOKEN)
    return url, honest


def listed(url: str) -> dict[str, dict]:
    workers = httpx.get(f"{url}/list_workers", headers=USER).json()["workers"]
    return {w["name"]: w for w in workers}


def test_an_unauthenticated_fake_worker_gets_no_prompts(
    keyed: tuple, doubles: Callable[..., StandInWorker]
) -> None:
    url, honest = keyed
    fake = doubles("tiny")
    claim = {
        "worker_name": fake.address,
        "check_heart_beat": False,
        "worker_status": {"model_names": ["tiny", "fake-model"], "speed": 1000, "queue_length": 0},
    }
    refused = httpx.post(f"{url}/register_worker", json=claim)
    assert refused.status_code == 401  # loopback is not trusted by itself
    assert "WORKER_TOKEN" in refused.json()["text"]
    assert httpx.post(f"{url}/register_worker", json=claim, headers=USER).status_code == 403
    for _ in range(10):
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=USER, timeout=30)
        assert answer.status_code == 200, answer.text
    assert fake.prompts == [] and fake.authorizations == []
    assert len(honest.prompts) == 10 and "a secret" in honest.prompts[0]
    models = httpx.get(f"{url}/v1/models", headers=USER).json()["data"]
    assert [m["id"] for m in models] == ["tiny"]
    # Every call the controller made to the honest worker carried the worker token.
    assert set(honest.authorizations) == {f"Bearer {WORKER_TOKEN}"}


def test_a_claimed_status_is_ignored_and_no_worker_outlives_its_heartbeats(
    keyed: tuple, doubles: Callable[..., StandInWorker]
) -> None:
    url, _ = keyed
    boastful = doubles("its-own-model", speed=1000)
    claim = {
        "worker_name": boastful.address,
        "check_heart_beat": False,
        "worker_status": {"model_names": ["tiny"], "speed": 1000, "queue_length": 0},
    }
    token = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    assert httpx.post(f"{url}/register_worker", json=claim, headers=token).status_code == 200
    entry = listed(url)[boastful.address]
    assert entry["model_names"] == ["its-own-model"]  # what the address answered itself
    assert entry["speed"] == 10.0  # bounded
    started = time.monotonic()
    assert wait_until(lambda: boastful.address not in listed(url), 10)  # no heartbeats: gone
    assert time.monotonic() - started < 4.5  # expiration 3 s, whatever check_heart_beat said


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/worker_generate", {"model": "tiny", "prompt": "x", "max_new_tokens": 1}),
        ("POST", "/worker_generate_stream", {"model": "tiny", "prompt": "x"}),
        ("POST", "/worker_generate_completion", {"model": "tiny", "prompt": "x"}),
        ("POST", "/count_token", {"model": "tiny", "prompt": "x"}),
        ("POST", "/model_details", {"model": "tiny"}),
        ("POST", "/worker_get_conv_template", {"model": "tiny"}),
        ("POST", "/get_worker_address", {"model": "tiny"}),
        ("POST", "/refresh_all_workers", None),
        ("POST", "/list_models", None),
        ("POST", "/list_language_models", None),
        ("POST", "/list_multimodal_models", None),
        ("POST", "/worker_get_status", None),
        ("GET", "/list_workers", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/datasets", None),
    ],
)
def test_every_route_but_the_health_checks_needs_a_key(
    keyed: tuple, method: str, path: str, body: dict | None
) -> None:
    url, honest = keyed
    before = honest.calls
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = httpx.request(method, f"{url}{path}", json=body, headers=headers)
        assert refused.status_code == 401, (path, refused.text)
        assert refused.headers["www-authenticate"] == "Bearer"
    assert honest.calls == before  # nothing reached the worker
    for key in (USER_KEY, WORKER_TOKEN):
        headers = {"Authorization": f"Bearer {key}"}
        admitted = httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)
        assert admitted.status_code == 200, (path, admitted.text)
    for open_path in ("/health", "/test_connection"):
        assert httpx.get(f"{url}{open_path}").status_code == 200


def test_metrics_may_be_public(controller: Callable[..., str]) -> None:
    url = controller(env={**KEYED, "PUBLIC_METRICS": "true"})
    assert httpx.get(f"{url}/metrics").status_code == 200
    assert httpx.get(f"{url}/list_workers").status_code == 401


def test_a_stranger_cannot_unregister_a_live_worker(keyed: tuple) -> None:
    url, honest = keyed
    body = {"worker_name": honest.address}
    assert httpx.post(f"{url}/unregister_worker", json=body).status_code == 401
    assert httpx.post(f"{url}/unregister_worker", json=body, headers=USER).status_code == 403
    assert httpx.post(f"{url}/receive_heart_beat", json=body).status_code == 401
    assert honest.address in listed(url)
    token = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    assert httpx.post(f"{url}/unregister_worker", json=body, headers=token).status_code == 200
    assert honest.address not in listed(url)


def test_workers_without_a_token_join_from_a_trusted_network(
    controller: Callable[..., str], doubles: Callable[..., StandInWorker]
) -> None:
    """FastChat's own workers send no token: an operator lists their network."""
    url = controller(env={**KEYED, "TRUSTED_WORKER_NETWORKS": "127.0.0.0/8"})
    fastchat_like = doubles("tiny").join(url)  # no token
    assert fastchat_like.address in listed(url)
    answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=USER, timeout=30)
    assert answer.status_code == 200 and len(fastchat_like.prompts) == 1
    # The network admits workers, not users: the rest still takes a key.
    assert httpx.get(f"{url}/list_workers").status_code == 401
