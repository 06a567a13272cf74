"""The seed's serving tools against a real controller and worker: ``test_message`` with the
README's ``--model-name /path/to/model``, and ``test_throughput`` with the seed's flags."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, run_python


@pytest.fixture
def stack(controller: Callable[..., str], worker: Callable, tiny_model_dir: Path) -> tuple:
    url = controller(expiration=30)
    worker_url, _ = worker(tiny_model_dir, url)
    return url, worker_url


def test_test_message_takes_the_model_path_the_worker_serves(
    stack: tuple, tiny_model_dir: Path
) -> None:
    url, _ = stack
    args = ["-m", "services.controller.test_message", "--controller-address", url]
    result = run_python(*args, "--model-name", f"{tiny_model_dir}/", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{tiny_model_dir}/ is served as tiny-llama" in result.stdout
    assert "worker_addr: http://127.0.0.1:" in result.stdout
    unknown = run_python(*args, "--model-name", "/models/other-model", "--max-new-tokens", "4")
    assert unknown.returncode == 1
    assert "No available workers for /models/other-model" in unknown.stderr
    assert "served models: tiny-llama" in unknown.stderr


def test_test_throughput_measures_the_stack(stack: tuple, tiny_model_dir: Path) -> None:
    url, worker_url = stack
    args = ["-m", "services.controller.test_throughput", "--controller-address", url]
    args += ["--model-name", str(tiny_model_dir), "--n-thread", "3", "--max-new-tokens", "8"]
    through_controller = run_python(*args)
    assert through_controller.returncode == 0, through_controller.stderr
    dispatched = run_python(*args, "--test-dispatch")
    assert dispatched.returncode == 0, dispatched.stderr
    for i in range(3):
        assert f"thread {i} goes to {worker_url}" in dispatched.stdout
    for result in (through_controller, dispatched):
        assert "Time (POST): " in result.stdout
        found = re.search(
            r"Time \(Completion\): [\d.]+ s, n threads: 3, throughput: ([\d.]+) tokens/s "
            r"\((\d+) tokens",
            result.stdout,
        )
        assert found, result.stdout
        assert float(found[1]) > 0 and 3 <= int(found[2]) <= 24


def test_test_throughput_refuses_bad_flags_and_unknown_models(stack: tuple) -> None:
    url, _ = stack
    args = ["-m", "services.controller.test_throughput", "--controller-address", url]
    bad = run_python(*args, "--n-thread", "0")
    assert bad.returncode == 2 and "--n-thread" in bad.stderr
    unknown = run_python(*args, "--model-name", "nope")
    assert unknown.returncode == 1 and "served models: tiny-llama" in unknown.stderr


def test_test_message_waits_for_a_worker_to_register(
    controller: Callable[..., str], worker: Callable, tiny_model_dir: Path
) -> None:
    """Right after start-up the controller may list no model yet: test_message waits (bounded)
    for a worker instead of failing at once, and says so."""
    url = controller(expiration=30)
    args = ["-m", "services.controller.test_message", "--controller-address", url]
    args += ["--max-new-tokens", "4"]
    alone = run_python(*args, "--wait-seconds", "1")
    assert alone.returncode == 1
    assert "waiting up to 1 s for a worker" in alone.stdout
    assert "No models are registered with the controller" in alone.stderr
    waiting = subprocess.Popen(
        [sys.executable, *args, "--wait-seconds", "120"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        worker(tiny_model_dir, url)
        out, err = waiting.communicate(timeout=180)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, out + err
    assert "Models: ['tiny-llama']" in out
