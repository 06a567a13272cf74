"""Chat logic that never reaches a model: refusals, limits, model choice, controller down."""

from __future__ import annotations

import pytest

from services.webui.chat import (
    NO_MODEL_MSG,
    ChatState,
    TurnUpdate,
    choose_model,
    error_message,
    run_turn,
)
from services.webui.controller_client import ControllerClient
from shared.constants import CONVERSATION_LEN_LIMIT, CONVERSATION_LIMIT_MSG
from shared.conversation import get_conv_template


@pytest.fixture
def offline_client(dead_address: str) -> ControllerClient:
    """A client whose controller does not exist: any request it makes fails loudly."""
    return ControllerClient(dead_address, controller_timeout=2.0)


def test_choose_model_prefers_url_then_current_then_first() -> None:
    models = ["a", "b", "c"]
    assert choose_model(models, "b", "c") == "b"
    assert choose_model(models, "unknown", "c") == "c"
    assert choose_model(models, None, "gone") == "a"
    assert choose_model(models, "") == "a"
    assert choose_model([], "a", "a") == ""


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_does_nothing(offline_client: ControllerClient, text: str) -> None:
    state = ChatState()
    updates = list(run_turn(state, offline_client, "m", text))
    assert updates == [TurnUpdate([], text)]
    assert state == ChatState()


def test_no_model_selected_is_explained(offline_client: ControllerClient) -> None:
    [update] = run_turn(ChatState(), offline_client, "", "hello")
    assert update.error == NO_MODEL_MSG
    assert update.textbox == "hello"
    assert update.history == [{"role": "assistant", "content": f"⚠️ {NO_MODEL_MSG}"}]


def test_conversation_length_limit_refuses_without_sending(
    offline_client: ControllerClient,
) -> None:
    conv = get_conv_template("vicuna_v1.1")
    for i in range(CONVERSATION_LEN_LIMIT):
        conv.append_message(conv.roles[0], f"q{i}")
        conv.append_message(conv.roles[1], f"a{i}")
    state = ChatState(model="m", conversation=conv, conv_id="x")
    before = conv.copy()

    [update] = run_turn(state, offline_client, "m", "one more")

    assert update.error == CONVERSATION_LIMIT_MSG
    assert update.textbox == "one more"
    assert update.history[:-1] == before.to_chatbot_messages()
    assert update.history[-1]["content"].endswith(CONVERSATION_LIMIT_MSG)
    assert state.conversation == before


def test_one_round_below_the_limit_is_still_sent(offline_client: ControllerClient) -> None:
    conv = get_conv_template("vicuna_v1.1")
    for i in range(CONVERSATION_LEN_LIMIT - 1):
        conv.append_message(conv.roles[0], f"q{i}")
        conv.append_message(conv.roles[1], f"a{i}")
    state = ChatState(model="m", conversation=conv)
    [update] = run_turn(state, offline_client, "m", "one more")
    # It got as far as asking the (absent) controller for a worker.
    assert update.error is not None and "controller" in update.error
    assert conv.num_rounds() == CONVERSATION_LEN_LIMIT - 1


def test_controller_down_is_named(offline_client: ControllerClient) -> None:
    state = ChatState()
    [update] = run_turn(state, offline_client, "m", "hello")
    address = offline_client.controller_address
    assert update.error is not None
    assert update.error.startswith(f"The controller at {address} could not be reached")
    assert "HIGH TRAFFIC" not in update.error
    assert update.textbox == "hello"
    assert update.history == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": f"⚠️ {update.error}"},
    ]
    assert state.conversation is None and state.model == "m"


def test_switching_model_starts_a_new_conversation(offline_client: ControllerClient) -> None:
    conv = get_conv_template("vicuna_v1.1")
    conv.append_message(conv.roles[0], "hi")
    conv.append_message(conv.roles[1], "hello")
    state = ChatState(model="a", conversation=conv, conv_id="x")
    list(run_turn(state, offline_client, "b", "hi"))
    assert state.model == "b"
    assert state.conversation is None


def test_error_message_keeps_the_partial_reply() -> None:
    assert error_message("", "boom") == "⚠️ boom"
    assert error_message("half an answ", "boom") == "half an answ\n\n⚠️ boom"
