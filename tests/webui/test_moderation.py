"""``--moderate``: each message is checked with a real (small) OpenAI-compatible moderation
server first; a flagged one never reaches a model and the textbox shows FastChat's message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.webui.chat import ChatState, GenerationParams, run_turn
from services.webui.controller_client import ControllerClient
from services.webui.moderation import Moderator
from shared.constants import MODERATION_MSG
from shared.settings import WebUISettings
from tests.webui.moderation_server import ModerationServer, moderation_server
from tests.webui.stack import Stack


@pytest.fixture
def server() -> Iterator[ModerationServer]:
    with moderation_server() as running:
        yield running


def test_a_flagged_text_is_flagged_and_sent_as_real_json(server: ModerationServer) -> None:
    moderator = Moderator(server.base_url, "mod-key")
    assert moderator('a "forbidden" thing,\nwith quotes') is True
    assert moderator("a harmless question") is False
    # Quotes survive (the original built the JSON by hand); newlines go, as FastChat sends it.
    assert server.inputs() == ['a "forbidden" thing,with quotes', "a harmless question"]
    assert {r["authorization"] for r in server.requests} == {"Bearer mod-key"}
    assert {r["path"] for r in server.requests} == {"/v1/moderations"}


def test_the_key_falls_back_to_openai_api_key(
    server: ModerationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key")
    settings = WebUISettings(moderate=True, moderation_base_url=server.base_url + "/")
    moderator = Moderator.from_settings(settings)
    assert moderator is not None and moderator.url == f"{server.base_url}/moderations"
    moderator("hello")
    assert server.requests[-1]["authorization"] == "Bearer openai-key"
    assert Moderator.from_settings(WebUISettings()) is None  # off unless --moderate


def test_the_base_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBUI_MODERATE", "true")
    monkeypatch.setenv("WEBUI_MODERATION_BASE_URL", "http://127.0.0.1:9/v1")
    moderator = Moderator.from_settings(WebUISettings())
    assert moderator is not None and moderator.url == "http://127.0.0.1:9/v1/moderations"


def test_a_check_that_cannot_be_made_lets_the_text_through(
    server: ModerationServer, dead_address: str
) -> None:
    assert Moderator(dead_address, timeout=2).__call__("forbidden") is False
    server.broken = True
    assert Moderator(server.base_url).__call__("forbidden") is False


def test_a_flagged_message_is_not_sent_and_the_textbox_says_why(
    stack: Stack, server: ModerationServer
) -> None:
    moderator = Moderator(server.base_url)
    state = ChatState()
    with ControllerClient(stack.controller) as client:
        [refused] = run_turn(state, client, stack.model, "something forbidden", None, moderator)
        assert refused.textbox == MODERATION_MSG and refused.error == MODERATION_MSG
        assert refused.history == [{"role": "assistant", "content": f"⚠️ {MODERATION_MSG}"}]
        assert state.conversation is None and state.failed_text is None
        # A harmless one goes on to the model.
        params = GenerationParams(max_new_tokens=8)
        *_, answered = run_turn(state, client, stack.model, "hello", params, moderator)
    assert answered.reply is not None and answered.error is None
    assert state.rounds() == 1
    assert server.inputs() == ["something forbidden", "hello"]
