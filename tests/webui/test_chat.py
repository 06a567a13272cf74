"""Chat logic that never reaches a model: refusals, limits, model choice, controller down."""

from __future__ import annotations

import pytest

from services.webui.chat import (
    INPUT_TOO_LONG_MSG,
    NO_MODEL_MSG,
    NOTHING_TO_REGENERATE_MSG,
    Buttons,
    ChatState,
    TurnUpdate,
    buttons_for,
    choose_model,
    error_message,
    regenerate_turn,
    run_turn,
)
from services.webui.chat_page import for_display
from services.webui.controller_client import ControllerClient
from shared.constants import CONVERSATION_LEN_LIMIT, CONVERSATION_LIMIT_MSG, INPUT_CHAR_LEN_LIMIT
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


def test_too_long_input_is_refused_with_its_length(offline_client: ControllerClient) -> None:
    text = "ab" * INPUT_CHAR_LEN_LIMIT
    state = ChatState()
    [update] = run_turn(state, offline_client, "m", text)
    assert update.error == INPUT_TOO_LONG_MSG.format(
        length=2 * INPUT_CHAR_LEN_LIMIT, limit=INPUT_CHAR_LEN_LIMIT
    )
    assert update.error.startswith(f"Your message is {2 * INPUT_CHAR_LEN_LIMIT} characters long")
    assert update.textbox == text, "the text stays in the box to be shortened"
    assert state.conversation is None and state.failed_text is None


def test_input_of_exactly_the_limit_is_sent(offline_client: ControllerClient) -> None:
    [update] = run_turn(ChatState(), offline_client, "m", "x" * INPUT_CHAR_LEN_LIMIT)
    assert update.error is not None and "controller" in update.error


def test_buttons_follow_the_conversation() -> None:
    state = ChatState()
    assert buttons_for(state) == Buttons(vote=False, regenerate=False, clear=False)
    conv = get_conv_template("vicuna_v1.1")
    conv.append_message(conv.roles[0], "hi")
    conv.append_message(conv.roles[1], "hello")
    state = ChatState(model="m", conversation=conv, conv_id="x")
    assert buttons_for(state) == Buttons(vote=True, regenerate=True, clear=True)
    assert buttons_for(state, busy=True) == Buttons()
    state.voted = True
    assert buttons_for(state) == Buttons(vote=False, regenerate=True, clear=True)
    state.reset("m")
    state.failed_text = "again"
    assert buttons_for(state) == Buttons(vote=False, regenerate=True, clear=True)


def test_failure_keeps_the_text_for_regenerate(offline_client: ControllerClient) -> None:
    state = ChatState()
    [update] = run_turn(state, offline_client, "m", "hello")
    assert update.error is not None and state.failed_text == "hello"
    [again] = regenerate_turn(state, offline_client)
    assert again.error == update.error and again.history == update.history


def test_regenerate_without_a_reply_says_so(offline_client: ControllerClient) -> None:
    [update] = regenerate_turn(ChatState(model="m"), offline_client)
    assert update.error == NOTHING_TO_REGENERATE_MSG
    assert update.history == [{"role": "assistant", "content": f"⚠️ {NOTHING_TO_REGENERATE_MSG}"}]


def test_state_dict_is_the_template_plus_ids() -> None:
    conv = get_conv_template("vicuna_v1.1")
    conv.append_message(conv.roles[0], "hi")
    conv.append_message(conv.roles[1], "hello")
    state = ChatState(model="m", conversation=conv, conv_id="abc")
    data = state.to_dict()
    assert data["conv_id"] == "abc" and data["model_name"] == "m"
    assert data["template_name"] == "vicuna_v1.1"
    assert data["messages"][-2:] == [["USER", "hi"], ["ASSISTANT", "hello"]]
    assert ChatState(model="m").to_dict() == {"conv_id": "", "model_name": "m"}


@pytest.mark.parametrize(
    "text",
    [
        "**not bold** and `not code`",
        '<img src=x onerror="alert(1)"> <b>tag</b> <script>alert(2)</script>',
        "</pre><b>escape attempt</b>",
        "  indented\n\n    four spaces\n# not a heading",
        "& &amp; &lt;",
    ],
)
def test_the_user_text_is_shown_as_typed_and_replies_as_markdown(text: str) -> None:
    from html.parser import HTMLParser

    [user, reply] = for_display(
        [{"role": "user", "content": text}, {"role": "assistant", "content": "**bold**"}]
    )
    assert reply == {"role": "assistant", "content": "**bold**"}

    class Reader(HTMLParser):
        """What a browser makes of the user's bubble: its elements and its text."""

        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.tags: list[str] = []
            self.text = ""

        def handle_starttag(self, tag: str, attrs: object) -> None:
            self.tags.append(tag)

        def handle_data(self, data: str) -> None:
            self.text += data

    reader = Reader()
    reader.feed(user["content"])
    assert reader.tags == ["pre"] and reader.text == text
