"""The worker's command line: flags from the settings, the old spellings, defaults, bad values."""

from __future__ import annotations

import os

import pytest

from services.model_worker.__main__ import parse_worker_args
from shared.settings import default_model_dir
from tests.support import run_python, usage_error


def test_fastchat_spellings_still_work() -> None:
    _, common, settings, _ = parse_worker_args(
        [
            "--worker-address",
            "http://worker:9/",
            "--max-batch-size=3",
            "--no-register",
            "--controller-address",
            "http://controller:1",
            "--load-8bit",
            "--seed",
            "5",
            "--log-level",
            "DEBUG",
        ]
    )
    assert settings.address == "http://worker:9/"
    assert settings.limit_model_concurrency == 3
    assert settings.register_to_controller is False
    assert common.controller_address == "http://controller:1"
    assert common.log_level == "DEBUG"
    assert (settings.load_8bit, settings.seed) == (True, 5)
    canonical = parse_worker_args(["--limit-model-concurrency", "4"]).settings
    assert canonical.limit_model_concurrency == 4
    assert canonical.register_to_controller is True


def test_the_model_path_defaults_to_the_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKER_MODEL_PATH", raising=False)
    assert parse_worker_args([]).settings.model_path == str(default_model_dir())
    monkeypatch.setenv("WORKER_MODEL_PATH", "/models/from-env")
    assert parse_worker_args([]).settings.model_path == "/models/from-env"
    assert parse_worker_args(["--model-path", "/x"]).settings.model_path == "/x"


def test_the_environment_sets_defaults_that_flags_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_REGISTER_TO_CONTROLLER", "false")
    monkeypatch.setenv("WORKER_MAX_QUEUE", "7")
    settings = parse_worker_args([]).settings
    assert (settings.register_to_controller, settings.max_queue) == (False, 7)
    settings = parse_worker_args(["--register-to-controller", "--max-queue", "8"]).settings
    assert (settings.register_to_controller, settings.max_queue) == (True, 8)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--port", "many"], "--port"),
        (["--engine", "turbo"], "--engine"),
        (["--max-batch-size", "x"], "--limit-model-concurrency"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_a_bad_flag_exits_2_naming_it(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture
) -> None:
    assert flag in usage_error(parse_worker_args, argv, capsys)


def test_help_lists_the_flags_and_their_other_spellings() -> None:
    env = {**os.environ, "COLUMNS": "250"}  # one line per spelling list
    proc = run_python("-m", "services.model_worker", "--help", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--model-path", "--limit-model-concurrency", "--controller-address"):
        assert flag in proc.stdout
    assert "--max-batch-size = --limit-model-concurrency" in proc.stdout
    assert "--no-register = --no-register-to-controller" in proc.stdout
