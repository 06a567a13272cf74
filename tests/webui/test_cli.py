"""``python -m services.webui``: every flag is a setting, and old spellings still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.webui.__main__ import conv_log_dir, parse_args


def test_todays_flags_set_the_settings() -> None:
    settings, common = parse_args(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "7000",
            "--controller-address",
            "http://127.0.0.1:1234",
            "--concurrency-count",
            "2",
            "--model-list-mode",
            "once",
            "--conv-log-dir",
            "/tmp/conv",
            "--log-level",
            "DEBUG",
        ]
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 7000)
    assert settings.concurrency_count == 2 and settings.model_list_mode == "once"
    assert common.controller_address == "http://127.0.0.1:1234"
    assert common.log_level == "DEBUG"
    assert conv_log_dir(settings, common) == Path("/tmp/conv")


def test_every_webui_setting_is_a_flag() -> None:
    settings, _ = parse_args(
        [
            "--worker-api-timeout=5",
            "--api-key=secret",
            "--refresh-seconds=0.5",
            "--base-models=/m/a,/m/b",
        ]
    )
    assert settings.worker_api_timeout == 5.0 and settings.api_key == "secret"
    assert settings.refresh_seconds == 0.5 and settings.base_models == "/m/a,/m/b"


def test_fastchat_controller_url_spelling() -> None:
    _, common = parse_args(["--controller-url=http://127.0.0.1:9"])
    assert common.controller_address == "http://127.0.0.1:9"


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBUI_PORT", "7001")
    monkeypatch.setenv("WEBUI_MODEL_LIST_MODE", "once")
    monkeypatch.setenv("LOG_DIR", "/tmp/logs")
    settings, common = parse_args(["--port", "7002"])
    assert settings.port == 7002 and settings.model_list_mode == "once"
    # Without --conv-log-dir the conversation log goes to the common log folder.
    assert conv_log_dir(settings, common) == Path("/tmp/logs")


def test_a_bad_value_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--model-list-mode", "sometimes"])
    assert "--model-list-mode" in capsys.readouterr().err
