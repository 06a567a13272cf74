"""Our command-line clients find the credentials `make up` wrote into .env and send them:
test_message (through the controller only) and register_worker (the worker token)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.scripts.recording_server import recording_server
from tests.support import python_output

KEY, TOKEN = "the-users-key", "the-worker-token"


def run_client(tmp_path: Path, module: str, *args: str) -> tuple[str, list[tuple[str, str]]]:
    """``python -m module args`` against the recording server, with only a .env file to find
    the credentials in; returns its output and what it sent (path, Authorization)."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"CONTROLLER_API_KEYS={KEY}\nCONTROLLER_API_KEY={KEY}\nWORKER_TOKEN={TOKEN}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CONTROLLER_API_KEY", "WORKER_TOKEN")}
    with recording_server() as (controller, seen):
        env |= {"CAMEL_ENV_FILE": str(env_file), "CONTROLLER_ADDRESS": controller}
        return python_output("-m", module, *args, env=env), seen


def test_test_message_sends_the_key_and_talks_only_to_the_controller(tmp_path: Path) -> None:
    module = "services.controller.test_message"
    out, seen = run_client(tmp_path, module, "--message", "Capital of France?")
    assert "assistant: Paris" in out
    paths = [path for path, _ in seen]
    assert paths[:3] == ["/refresh_all_workers", "/list_models", "/get_worker_address"]
    assert paths[3:] == ["/worker_get_conv_template", "/worker_generate_stream"]
    assert {auth for _, auth in seen} == {f"Bearer {KEY}"}


def test_register_worker_sends_the_worker_token(tmp_path: Path) -> None:
    module = "services.controller.register_worker"
    out, seen = run_client(tmp_path, module, "--worker-name", "http://w:1")
    assert "registered http://w:1" in out
    assert seen == [("/register_worker", f"Bearer {TOKEN}")]
