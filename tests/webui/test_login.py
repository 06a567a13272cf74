"""The web UI's login (a user's API key as the password) and the key it sends onwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.webui.controller_client import ControllerClient
from services.webui.login import login_check, outgoing_key
from services.webui.management_client import ManagementClient
from shared.auth import Credentials
from shared.settings import AuthSettings, WebUISettings
from tests.scripts.recording_server import MODEL, recording_server
from tests.support import ProcessGroup
from tests.webui.stack import start_webui

USER_KEY = "user-key-for-the-login"
WORKER_TOKEN = "the-stacks-own-token"


def test_no_login_without_keys_and_only_user_keys_sign_in() -> None:
    assert login_check(Credentials((), WORKER_TOKEN, allow_unauthenticated=True)) is None
    check = login_check(Credentials((USER_KEY, "second"), WORKER_TOKEN))
    assert check is not None
    assert check("anyone", USER_KEY) and check("someone else", "second")
    assert not check("anyone", "wrong") and not check("anyone", "")
    assert not check("anyone", WORKER_TOKEN)  # the stack's secret is not a user's password


def test_the_page_sends_its_own_key_else_the_worker_token() -> None:
    auth = AuthSettings(worker_token=WORKER_TOKEN)
    assert outgoing_key(WebUISettings(api_key="webui-key"), auth) == "webui-key"
    assert outgoing_key(WebUISettings(api_key=""), auth) == WORKER_TOKEN
    assert outgoing_key(WebUISettings(api_key=""), AuthSettings(worker_token="")) == ""


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    with recording_server() as server:
        yield server


def test_both_clients_send_the_key_to_the_controller_and_the_workers(
    recorder: tuple[str, list[tuple[str, str]]],
) -> None:
    url, seen = recorder
    with ControllerClient(url, api_key="k1") as chat:
        assert chat.list_models() == [MODEL]
        conv = chat.conversation_template(url, MODEL)
        conv.append_message("user", "hello")
        conv.append_message("assistant", None)
        replies = chat.stream_reply(url, MODEL, conv, temperature=0, top_p=1, max_new_tokens=4)
        assert list(replies) == ["Paris"]
    with ManagementClient(url, api_key="k1") as management:
        management.list_datasets()
    assert {path for path, _ in seen} >= {
        "/list_models",
        "/worker_get_conv_template",
        "/worker_generate_stream",
        "/v1/datasets?limit=100",
    }
    assert {auth for _, auth in seen} == {"Bearer k1"}


def test_a_web_ui_with_keys_serves_nothing_before_the_login(tmp_path: Path, redis_url: str) -> None:
    env = {"REDIS_URL": redis_url, "CONTROLLER_API_KEYS": USER_KEY, "WORKER_TOKEN": WORKER_TOKEN}
    with ProcessGroup(tmp_path, env) as group:
        url = start_webui(group, "http://127.0.0.1:9", tmp_path / "conv-logs")
        with httpx.Client(base_url=url, timeout=30) as browser:
            assert browser.get("/").status_code == 200  # the login page (and the healthcheck)
            assert browser.get("/config").status_code == 401
            assert browser.get("/gradio_api/info").status_code == 401
            refused = browser.post("/login", data={"username": "ann", "password": WORKER_TOKEN})
            assert refused.status_code == 400
            signed_in = browser.post("/login", data={"username": "ann", "password": USER_KEY})
            assert signed_in.status_code == 200, signed_in.text
            assert browser.get("/config").status_code == 200
