"""The private Redis of the local stack (up/ps/down: tests/compose/test_stack_end_to_end.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT, wait_until


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
