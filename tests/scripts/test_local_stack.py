"""The README's commands: the local stack's up / ps / down, and the Redis it falls back to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import REPO_ROOT, free_port, wait_until


def run_script(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_private_redis_is_started_and_stopped(tmp_path: Path) -> None:
    env = {**os.environ, "STACK_RUN_DIR": str(tmp_path / "run"), "LOG_DIR": str(tmp_path / "logs")}
    code = (
        "import ensure_redis as e; url = e.start_private(); "
        "print(url, e.answers(url), e.find_existing() == url or e.answers(e.LOCAL_URL))"
    )
    out = run_script("-c", code, env={**env, "PYTHONPATH": str(REPO_ROOT / "scripts")})
    url, answers, found = out.split()
    assert answers == "True" and found == "True"
    state = json.loads((tmp_path / "run" / "redis.json").read_text())
    assert state["url"] == url and alive(state["pid"])
    run_script("scripts/ensure_redis.py", "--stop", env=env)
    assert wait_until(lambda: not alive(state["pid"]), 10)
    assert not (tmp_path / "run" / "redis.json").exists()


@pytest.mark.slow
def test_stack_up_serves_test_message_and_down_stops_exactly_it(
    tmp_path: Path, redis_url: str, redis_prefix: str, default_model_dir: Path
) -> None:
    ports = {name: str(free_port()) for name in ("CONTROLLER_PORT", "WORKER_PORT", "WEBUI_PORT")}
    env = {
        **os.environ,
        **ports,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "STACK_RUN_DIR": str(tmp_path / "run"),
        "LOG_DIR": str(tmp_path / "logs"),
        "CONTROLLER_ADDRESS": f"http://127.0.0.1:{ports['CONTROLLER_PORT']}",
        "HF_HUB_OFFLINE": "1",
    }
    try:
        out = run_script("scripts/stack.py", "up", env=env)
        assert "(reused)" in out
        for port in ports.values():
            assert f"127.0.0.1:{port}" in out
        state = json.loads((tmp_path / "run" / "stack.json").read_text())
        pids = [s["pid"] for s in state["services"]]
        assert len(pids) == 3 and all(alive(pid) for pid in pids)

        ps = run_script("scripts/stack.py", "ps", env=env)
        assert ps.count("healthy") == 3

        reply = run_script(
            "-m",
            "services.controller.test_message",
            "--message",
            "What is the capital of France?",
            env=env,
        )
        assert "Paris" in reply
        page = httpx.get(f"http://127.0.0.1:{ports['WEBUI_PORT']}/", timeout=10)
        assert page.status_code == 200
        for name in ("controller", "model_worker", "webui"):
            assert (tmp_path / "logs" / f"{name}.log").stat().st_size > 0
    finally:
        run_script("scripts/stack.py", "down", env=env)
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 20)
    assert not (tmp_path / "run" / "stack.json").exists()
    assert "not running" in run_script("scripts/stack.py", "ps", env=env)
