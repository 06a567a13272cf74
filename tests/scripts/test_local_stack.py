"""The private Redis of the local stack (up/ps/down: tests/compose/test_stack_end_to_end.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support import REPO_ROOT, pid_alive, python_output, wait_until


def test_private_redis_is_started_and_stopped(tmp_path: Path) -> None:
    env = {**os.environ, "STACK_RUN_DIR": str(tmp_path / "run"), "LOG_DIR": str(tmp_path / "logs")}
    code = (
        "import ensure_redis as e; url = e.start_private(); "
        "print(url, e.answers(url), e.find_existing() == url or e.answers(e.LOCAL_URL))"
    )
    out = python_output("-c", code, env={**env, "PYTHONPATH": str(REPO_ROOT / "scripts")})
    url, answers, found = out.split()
    assert answers == "True" and found == "True"
    state = json.loads((tmp_path / "run" / "redis.json").read_text())
    assert state["url"] == url and pid_alive(state["pid"])
    python_output("scripts/ensure_redis.py", "--stop", env=env)
    assert wait_until(lambda: not pid_alive(state["pid"]), 10)
    assert not (tmp_path / "run" / "redis.json").exists()
