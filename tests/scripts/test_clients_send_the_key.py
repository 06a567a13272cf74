"""Our command-line clients find the credentials `make up` wrote into .env and send them:
test_message (through the controller only) and register_worker (the worker token)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.scripts.recording_server import recording_server
from tests.support import python_output

KEY, TOKEN = "the-users-key", "the-worker-token"


def client_env(tmp_path: Path, controller: str) -> dict[str, str]:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"CONTROLLER_API_KEYS={KEY}\nCONTROLLER_API_KEY={KEY}\nWORKER_TOKEN={TOKEN}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CONTROLLER_API_KEY", "WORKER_TOKEN")}
    return {**env, "CAMEL_ENV_FILE": str(env_file), "CONTROLLER_ADDRESS": controller}


def test_test_message_sends_the_key_and_talks_only_to_the_controller(tmp_path: Path) -> None:
    with recording_server() as (controller, seen):
        out = python_output(
            "-m", "services.controller.test_message", "--message", "Capital of France?",
            env=client_env(tmp_path, controller),
        )  # fmt: skip
    assert "assistant: Paris" in out
    paths = [path for path, _ in seen]
    assert paths[:3] == ["/refresh_all_workers", "/list_models", "/get_worker_address"]
    assert paths[3:] == ["/worker_get_conv_template", "/worker_generate_stream"]
    assert {auth for _, auth in seen} == {f"Bearer {KEY}"}


def test_register_worker_sends_the_worker_token(tmp_path: Path) -> None:
    with recording_server() as (controller, seen):
        out = python_output(
            "-m", "services.controller.register_worker", "--worker-name", "http://w:1",
            env=client_env(tmp_path, controller),
        )  # fmt: skip
    assert "registered http://w:1" in out
    assert seen == [("/register_worker", f"Bearer {TOKEN}")]
