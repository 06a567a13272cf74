"""Flags derived from the settings classes: env defaults, flags win, aliases, clear errors."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.cli import SettingsParser


class _Common(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="where Redis answers")


class _Section(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")

    port: int = 1
    register_to_controller: bool = True
    limit_model_concurrency: int = 32
    seed: int | None = None
    mode: Literal["batch", "sequential"] = "batch"


def _parser() -> SettingsParser:
    return SettingsParser(
        "demo",
        _Common,
        _Section,
        aliases={
            "--max-batch-size": "--limit-model-concurrency",
            "--no-register": "--no-register-to-controller",
        },
    )


def test_flags_win_over_the_environment_which_wins_over_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_PORT", "9")
    monkeypatch.setenv("DEMO_LIMIT_MODEL_CONCURRENCY", "11")
    monkeypatch.setenv("REDIS_URL", "redis://env:1/0")
    cli = _parser()
    cli.parse(["--port", "5"])
    section = cli.settings(_Section)
    assert (section.port, section.limit_model_concurrency) == (5, 11)
    assert cli.settings(_Common).redis_url == "redis://env:1/0"


def test_other_spellings_and_boolean_flags() -> None:
    cli = _parser()
    cli.parse(["--max-batch-size=3", "--no-register", "--seed", "7", "--mode", "sequential"])
    section = cli.settings(_Section)
    assert section.limit_model_concurrency == 3
    assert section.register_to_controller is False
    assert (section.seed, section.mode) == (7, "sequential")


def test_a_bad_value_is_a_usage_error_naming_the_flag(capsys: pytest.CaptureFixture) -> None:
    cli = _parser()
    cli.parse(["--port", "many"])
    with pytest.raises(SystemExit) as exit_info:
        cli.settings(_Section)
    assert exit_info.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_an_unknown_flag_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        _parser().parse(["--bogus", "1"])
    assert "--bogus" in capsys.readouterr().err


def test_export_puts_the_given_flags_into_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PORT", "3")  # restored after the test
    monkeypatch.setenv("DEMO_SEED", "1")
    cli = _parser()
    cli.parse(["--port", "7"])
    cli.export(_Section)
    import os

    assert os.environ["DEMO_PORT"] == "7" and os.environ["DEMO_SEED"] == "1"
    assert _Section().port == 7
