"""The pool's own flags, and the worker command lines it runs (which the worker must accept)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from services.model_pool.__main__ import parse_pool_args
from services.model_pool.children import Child, WorkerLaunch, worker_command
from services.model_worker.__main__ import parse_worker_args
from tests.support import run_python, usage_error


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_POLL_INTERVAL", "0.3")
    common, settings, _ = parse_pool_args(
        ["--port-range", "9000-9009", "--max-models", "2", "--controller-address", "http://c:1"]
    )
    assert (settings.port_range, settings.max_models) == ("9000-9009", 2)
    assert settings.poll_interval == 0.3
    assert common.controller_address == "http://c:1"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--port-range", "9-1"], "--port-range"),
        (["--port-range", "x"], "--port-range"),
        (["--max-models", "0"], "--max-models"),
        (["--load-timeout", "soon"], "--load-timeout"),
    ],
)
def test_bad_values_exit_2_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture
) -> None:
    assert flag in usage_error(parse_pool_args, argv, capsys)


def test_the_worker_command_runs_the_worker_module_with_flags_it_accepts() -> None:
    launch = WorkerLaunch("0.0.0.0", 21105, "http://pool-host:21105", "http://controller:21001")
    record = {"path": "/models/tiny-chat", "conv_template": "vicuna_v1.1"}
    extra = ["--dtype", "bfloat16", "--max-batch-size", "4"]
    command = worker_command("/usr/bin/python3", "tiny-chat", record, launch, extra)
    assert command[:3] == ["/usr/bin/python3", "-m", "services.model_worker"]
    assert command[-4:] == extra

    _, common, settings, _ = parse_worker_args(command[3:])
    assert (settings.model_path, settings.model_names) == ("/models/tiny-chat", "tiny-chat")
    assert (settings.host, settings.port) == ("0.0.0.0", 21105)
    assert settings.address == "http://pool-host:21105"
    assert common.controller_address == "http://controller:21001"
    assert settings.conv_template == "vicuna_v1.1"
    assert (settings.dtype, settings.limit_model_concurrency) == ("bfloat16", 4)
    without_template = worker_command("python", "m", {"path": "/m"}, launch, [])
    assert "--conv-template" not in without_template


def test_a_failed_worker_is_reported_by_its_own_error_line(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    child = Child("m", 1, subprocess.Popen(["true"]), log)
    child.process.wait()
    assert child.failure_reason() == ""
    log.write_text("loading...\nwarning: slow\nerror: could not load model 'm': gone\n")
    assert child.failure_reason() == "error: could not load model 'm': gone"
    log.write_text("Traceback (most recent call last):\n  boom\n")
    assert child.failure_reason().endswith("boom")


def test_help_works() -> None:
    proc = run_python("-m", "services.model_pool", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--port-range" in proc.stdout and "--worker-args" in proc.stdout
