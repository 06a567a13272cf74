"""The credentials the first `make up` writes into .env, and our clients reading them back."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from shared.settings import AuthSettings, ClientSettings, WebUISettings
from tests.support import REPO_ROOT, python_output, run_python

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import credentials  # a script, imported as a module

NAMES = ("CONTROLLER_API_KEYS", "CONTROLLER_API_KEY", "WEBUI_API_KEY", "WORKER_TOKEN")


def run_script(env_file: Path, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    return python_output(
        "scripts/credentials.py", env={**env, "CAMEL_ENV_FILE": str(env_file), **extra}
    )


def test_first_run_generates_every_credential_and_shows_the_key_once(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    first = run_script(env_file)
    values = credentials.read_env_file(env_file)
    assert set(values) == set(NAMES)
    key = values["CONTROLLER_API_KEYS"]
    assert len(key) >= 40 and key in first
    assert values["CONTROLLER_API_KEY"] == values["WEBUI_API_KEY"] == key
    assert values["WORKER_TOKEN"] not in (key, "") and len(values["WORKER_TOKEN"]) >= 40
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    second = run_script(env_file)
    assert credentials.read_env_file(env_file) == values
    assert key not in second


def test_empty_lines_of_a_copied_example_are_filled_in_place(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    example = (REPO_ROOT / ".env.example").read_text()
    env_file.write_text(example)
    run_script(env_file)
    text = env_file.read_text()
    values = credentials.read_env_file(env_file)
    assert all(values[name] for name in NAMES)
    assert all(text.count(f"\n{name}=") == 1 for name in NAMES)
    assert text.startswith(example.split("CONTROLLER_API_KEYS=")[0])


def test_values_already_set_are_kept(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CONTROLLER_API_KEYS=mine,other\nLOG_LEVEL=DEBUG\n")
    run_script(env_file, WORKER_TOKEN="from-the-shell")
    values = credentials.read_env_file(env_file)
    assert values["CONTROLLER_API_KEYS"] == "mine,other"
    assert values["CONTROLLER_API_KEY"] == values["WEBUI_API_KEY"] == "mine"
    assert "WORKER_TOKEN" not in values  # the environment has it: compose uses that
    assert values["LOG_LEVEL"] == "DEBUG"


def test_without_an_env_file_the_environment_must_hold_the_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env["CAMEL_ENV_FILE"] = ""
    refused = run_python("scripts/credentials.py", env=env)
    assert refused.returncode == 1
    assert "CONTROLLER_API_KEYS, WORKER_TOKEN unset" in refused.stderr
    given = {**env, "CONTROLLER_API_KEYS": "k", "WORKER_TOKEN": "t"}
    assert python_output("scripts/credentials.py", env=given) == ""


def test_clients_and_services_read_the_env_file_under_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    credentials.ensure_credentials(env_file, environ={})
    values = credentials.read_env_file(env_file)
    for name in (*NAMES, "WEBUI_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAMEL_ENV_FILE", str(env_file))
    assert ClientSettings().controller_api_key == values["CONTROLLER_API_KEY"]
    assert WebUISettings().api_key == values["WEBUI_API_KEY"]
    assert AuthSettings().worker_token == values["WORKER_TOKEN"]
    assert AuthSettings().controller_api_keys == values["CONTROLLER_API_KEYS"]
    monkeypatch.setenv("CONTROLLER_API_KEY", "from-the-environment")
    assert ClientSettings().controller_api_key == "from-the-environment"
    # Empty: no file is read (tests/conftest.py sets it so, for every test).
    monkeypatch.setenv("CAMEL_ENV_FILE", "")
    assert ClientSettings(controller_api_key="x").controller_api_key == "x"
    assert AuthSettings().worker_token == ""
