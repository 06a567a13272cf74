"""Deploy / undeploy through the controller and a model pool, as real processes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.model_pool.ports import parse_port_range
from services.model_pool.supervisor import ModelPool
from shared.deployments import (
    DEPLOYMENT_KIND,
    LOADING,
    PENDING,
    new_deployment_record,
    pool_heartbeat_key,
)
from shared.job_records import RecordStore
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings, PoolSettings
from tests.support import Stack, wait_record, wait_until


@pytest.fixture
def models_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(tiny_model_dir, folder / "tiny-chat")
    broken = folder / "broken"
    shutil.copytree(tiny_model_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    adapter = folder / "an-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    return folder


@pytest.fixture
def stack(start_stack: Callable[..., Stack], models_dir: Path) -> str:
    """A controller and a model pool serving ``models_dir``; returns the controller's URL."""
    stack = start_stack({"MODELS_DIR": str(models_dir)})
    stack.start_pool(worker_ports=20)
    return stack.url


def wait_status(api: str, name: str, statuses: set[str], timeout: float = 120) -> dict:
    return wait_record(f"{api}/v1/models/{name}/deploy", statuses, timeout, interval=0.3)


def test_deploy_chat_and_undeploy_without_restarting_anything(stack: str) -> None:
    api = stack
    created = httpx.post(f"{api}/v1/models/tiny-chat/deploy")
    assert created.status_code == 202
    assert created.json()["status"] == "pending"
    again = httpx.post(f"{api}/v1/models/tiny-chat/deploy")
    assert again.status_code == 200  # idempotent while it is (being) deployed

    record = wait_status(api, "tiny-chat", {"deployed", "failed"})
    assert record["status"] == "deployed", record
    assert record["worker_address"].startswith("http://127.0.0.1:")
    assert wait_until(
        lambda: "tiny-chat" in httpx.post(f"{api}/list_models").json()["models"], 30, 0.3
    )
    assert "tiny-chat" in [m["id"] for m in httpx.get(f"{api}/v1/models").json()["data"]]
    reply = httpx.post(
        f"{api}/v1/chat/completions",
        json={
            "model": "tiny-chat",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 4,
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] >= 1
    listed = httpx.get(f"{api}/v1/deployments").json()["data"]
    assert [d["model"] for d in listed] == ["tiny-chat"]

    gone = httpx.delete(f"{api}/v1/models/tiny-chat/deploy")
    assert gone.status_code == 200
    assert gone.json()["status"] == "undeploying"
    assert wait_until(
        lambda: httpx.get(f"{api}/v1/models/tiny-chat/deploy").status_code == 404, 30, 0.3
    )
    assert wait_until(
        lambda: "tiny-chat" not in httpx.post(f"{api}/list_models").json()["models"], 30, 0.3
    )


def test_a_model_that_cannot_load_fails_with_the_workers_reason(stack: str) -> None:
    api = stack
    assert httpx.post(f"{api}/v1/models/broken/deploy").status_code == 202
    record = wait_status(api, "broken", {"failed", "deployed"})
    assert record["status"] == "failed"
    assert record["error"]["message"].startswith("the model worker exited with code 2: error:")
    assert "no-such-architecture" in record["error"]["message"]
    # A failed deployment can be dropped, or asked for again.
    assert httpx.delete(f"{api}/v1/models/broken/deploy").json()["status"] == "undeployed"
    assert httpx.get(f"{api}/v1/models/broken/deploy").status_code == 404


def test_bad_deploy_requests_name_the_field(
    controller: Callable[..., str], models_dir: Path, tmp_path: Path
) -> None:
    api = controller(env={"MODELS_DIR": str(models_dir)})

    def error(name: str, body: object = None) -> tuple[int, dict]:
        response = httpx.post(f"{api}/v1/models/{name}/deploy", json=body)
        return response.status_code, response.json()["error"]

    status, err = error("nope")
    assert (status, err["param"], err["code"]) == (404, "name", "model_not_found")
    status, err = error("an-adapter")
    assert (status, err["param"]) == (400, "name")
    assert "merge it into its base first" in err["message"]
    status, err = error("bad name!")
    assert (status, err["param"]) == (400, "name")
    status, err = error("x", {"path": str(tmp_path / "missing")})
    assert (status, err["param"]) == (400, "path")
    status, err = error("x", {"path": str(tmp_path)})
    assert (status, err["param"]) == (400, "path")
    assert "no config.json" in err["message"]
    status, err = error("x", {"pth": "/tmp"})
    assert (status, err["param"]) == (400, "pth")
    assert httpx.get(f"{api}/v1/models/nope/deploy").status_code == 404
    assert httpx.delete(f"{api}/v1/models/nope/deploy").status_code == 404
    # The OpenAI model route is still there next to .../deploy.
    assert httpx.get(f"{api}/v1/models/nope").status_code == 404


def test_deployments_held_by_a_dead_pool_go_back_to_pending(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    common = CommonSettings(redis_url=redis_url, redis_key_prefix=redis_prefix, log_dir=tmp_path)
    store = RecordStore(sync_redis(redis_url), RedisKeys(redis_prefix), DEPLOYMENT_KIND)
    record = new_deployment_record("orphan", str(tmp_path))
    store.create({**record, "status": LOADING, "pool": "dead-pool"})
    # max_models=0 lets the pool look at records without starting any worker.
    pool = ModelPool(PoolSettings(name="alive", port_range="1-2", max_models=0), common, "http://x")
    try:
        pool.step()
        assert store.get("orphan")["status"] == PENDING
        assert store.get("orphan")["pool"] is None
        heartbeat = pool_heartbeat_key(RedisKeys(redis_prefix), "alive")
        assert sync_redis(redis_url).pttl(heartbeat) > 0
        # A record held by a live pool is left alone.
        store.update("orphan", status=LOADING, pool="alive")
        sync_redis(redis_url).set(pool_heartbeat_key(RedisKeys(redis_prefix), "other"), "1", ex=5)
        store.update("orphan", pool="other")
        pool.step()
        assert store.get("orphan")["pool"] == "other"
    finally:
        pool.shutdown()


def test_port_ranges_are_checked() -> None:
    assert parse_port_range("5-7") == [5, 6, 7]
    for bad in ("7-5", "x", "0-3", "1-70000"):
        with pytest.raises(ValueError):
            parse_port_range(bad)
