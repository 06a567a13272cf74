"""A model pool with keys configured, as a real process with a real worker child.

Its routes but ``/health`` need a key; it hands its credentials to its workers through their
environment (never their command line, which ``ps`` shows to every user), and probes them with
the worker token, so a worker is only ``deployed`` once it accepts the token the controller
will send.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.deployments import DEPLOYMENT_KIND, new_deployment_record
from shared.job_records import RecordStore
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from tests.support import ServiceProcess, free_port, wait_until

USER_KEY = "user-key-for-the-pool-tests"
WORKER_TOKEN = "worker-token-for-the-pool-tests"


@pytest.fixture
def start_pool(
    service: Callable[..., ServiceProcess], redis_url: str, redis_prefix: str, tmp_path: Path
) -> Callable[..., str]:
    """A pool with CONTROLLER_API_KEYS (and ``more_env``) in its environment and ``extra``
    flags; returns its URL."""

    def start(*extra: str, more_env: dict[str, str] | None = None) -> str:
        port, first = free_port(), free_port()
        env = {
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": redis_prefix,
            "LOG_DIR": str(tmp_path / "logs"),
            "CONTROLLER_API_KEYS": USER_KEY,
            "ALLOW_UNAUTHENTICATED": "false",
            "POOL_POLL_INTERVAL": "0.3",
            **(more_env or {}),
        }
        args = ["--port", str(port), "--port-range", f"{first}-{first + 20}"]
        args += ["--controller-address", f"http://127.0.0.1:{free_port()}"]  # nobody there
        pool = service("services.model_pool", *args, *extra, env=env)
        url = f"http://127.0.0.1:{port}"
        pool.wait_http(f"{url}/health")
        return url

    return start


def deploy(redis_url: str, redis_prefix: str, name: str, path: Path) -> RecordStore:
    store = RecordStore(sync_redis(redis_url), RedisKeys(redis_prefix), DEPLOYMENT_KIND)
    store.create(new_deployment_record(name, str(path)))
    return store


def settled(store: RecordStore, name: str) -> dict[str, Any]:
    assert wait_until(lambda: store.get(name)["status"] in {"deployed", "failed"}, 120, 0.3)
    return store.get(name)


def test_pool_routes_need_a_key_but_health(start_pool: Callable[..., str]) -> None:
    pool = start_pool(more_env={"WORKER_TOKEN": WORKER_TOKEN})
    assert httpx.get(f"{pool}/health").status_code == 200
    for path in ("/openapi.json", "/docs", "/no-such-route"):
        refused = httpx.get(f"{pool}{path}")
        assert refused.status_code == 401, path
        assert refused.json()["param"] == "Authorization"
    for secret in (USER_KEY, WORKER_TOKEN):
        keyed = httpx.get(f"{pool}/openapi.json", headers={"Authorization": f"Bearer {secret}"})
        assert keyed.status_code == 200


def test_workers_get_the_credentials_in_their_environment_not_their_command_line(
    start_pool: Callable[..., str], redis_url: str, redis_prefix: str, tiny_model_dir: Path
) -> None:
    pool = start_pool("--worker-token", WORKER_TOKEN)  # the token by flag, the keys by env
    store = deploy(redis_url, redis_prefix, "tiny-chat", tiny_model_dir)
    record = settled(store, "tiny-chat")
    assert record["status"] == "deployed", record
    pid = httpx.get(f"{pool}/health").json()["models"]["tiny-chat"]["pid"]
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert WORKER_TOKEN.encode() not in command_line
    assert USER_KEY.encode() not in command_line
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"WORKER_TOKEN={WORKER_TOKEN}".encode() in environment
    assert f"CONTROLLER_API_KEYS={USER_KEY}".encode() in environment
    worker = record["worker_address"]
    assert httpx.post(f"{worker}/worker_get_status").status_code == 401
    as_pool = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    assert httpx.post(f"{worker}/worker_get_status", headers=as_pool).status_code == 200


def test_a_worker_that_refuses_the_pools_credentials_fails_its_deployment(
    start_pool: Callable[..., str], redis_url: str, redis_prefix: str, tiny_model_dir: Path
) -> None:
    start_pool()  # keys, but no worker token: the pool has nothing its workers accept
    store = deploy(redis_url, redis_prefix, "tiny-chat", tiny_model_dir)
    record = settled(store, "tiny-chat")
    assert record["status"] == "failed"
    assert record["error"]["code"] == "worker_refused_credentials"
    assert "WORKER_TOKEN" in record["error"]["message"]
