"""`make up` without Docker: compose.yaml's services as local processes, healthy, serving a chat
with the key the first `make up` generated into the .env file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from credentials import read_env_file

from tests.compose.conftest import APP_SERVICES
from tests.support import free_port, pid_alive, python_output, wait_until


def stack(*args: str, env: dict[str, str]) -> str:
    return python_output("scripts/stack.py", *args, env=env)


@pytest.mark.slow
def test_compose_stack_runs_locally_healthy_and_answers_a_chat(
    tmp_path: Path, redis_url: str, redis_prefix: str, default_model_dir: Path
) -> None:
    ports = {
        name: str(free_port())
        for name in ("CONTROLLER_PORT", "WORKER_PORT", "WEBUI_PORT", "POOL_PORT", "GATEWAY_PORT")
    }
    first = free_port()
    env = {
        **os.environ,
        **ports,
        "POOL_PORT_RANGE": f"{first}-{first}",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "STACK_MODE": "local",
        "STACK_RUN_DIR": str(tmp_path / "run"),
        "LOG_DIR": str(tmp_path / "logs"),
        "STACK_VOLUME_MODELS": str(default_model_dir.parent),
        "STACK_VOLUME_DATASETS": str(tmp_path / "datasets"),
        "STACK_VOLUME_JOBS": str(tmp_path / "jobs"),
        # A .env of the test's own: a developer's must not change the test.
        "CAMEL_ENV_FILE": str(tmp_path / ".env"),
        "HF_HUB_OFFLINE": "1",
        "LOG_TO_FILE": "true",
    }
    controller = f"http://127.0.0.1:{ports['CONTROLLER_PORT']}"
    pids: list[int] = []
    try:
        out = stack("up", env=env)
        assert f"{redis_url} (reused)" in out
        key = read_env_file(tmp_path / ".env")["CONTROLLER_API_KEY"]
        assert "Generated an API key" in out and key in out
        state = json.loads((tmp_path / "run" / "stack.json").read_text())
        entries = {entry["name"]: entry for entry in state["services"]}
        pids = [entry["pid"] for entry in entries.values()]
        long_running = set(APP_SERVICES) - {"model-init"}
        assert set(entries) == set(APP_SERVICES), out
        assert state["skipped"] == []
        for name in long_running:
            assert pid_alive(entries[name]["pid"]), name
            assert (tmp_path / "run" / f"{name}.pid").read_text().strip() == str(
                entries[name]["pid"]
            )
            # Each service's own daily log (the worker's carries its host name: replicas).
            assert list((tmp_path / "logs").glob(f"{name}*.log")), name

        status = {line.split()[0]: line.split()[1] for line in stack("ps", env=env).splitlines()}
        assert {name: status[name] for name in long_running} == dict.fromkeys(
            long_running, "healthy"
        )
        assert status["model-init"] == "done"

        # The worker advertises its own local address, and the controller routes to it.
        headers = {"Authorization": f"Bearer {key}"}
        address = httpx.post(
            f"{controller}/get_worker_address",
            json={"model": default_model_dir.name},
            headers=headers,
            timeout=10,
        ).json()["address"]
        assert address == f"http://127.0.0.1:{ports['WORKER_PORT']}"
        reply = httpx.post(
            f"{controller}/v1/chat/completions",
            json={
                "model": default_model_dir.name,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "temperature": 0,
                "max_tokens": 24,
            },
            headers=headers,
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        assert "Paris" in reply.json()["choices"][0]["message"]["content"]
        assert httpx.get(f"http://127.0.0.1:{ports['WEBUI_PORT']}/", timeout=10).status_code == 200
        # The gateway (Debian's nginx) serves both on one port.
        gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        assert httpx.get(f"{gateway}/", timeout=10).status_code == 200
        listed = httpx.get(f"{gateway}/v1/models", headers=headers, timeout=10)
        assert listed.status_code == 200 and listed.json()["data"], listed.text
        assert "event=http_access" in (tmp_path / "logs" / "gateway.log").read_text()
    finally:
        stack("down", env=env)
    assert wait_until(lambda: not any(pid_alive(pid) for pid in pids), 20)
    assert not (tmp_path / "run" / "stack.json").exists()
    assert not list((tmp_path / "run").glob("*.pid"))
    assert "not running" in stack("ps", env=env)
