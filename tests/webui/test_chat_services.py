"""Chat turns against real controller and worker processes: streaming, storage, and each failure
named in plain words."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.webui.chat import (
    CURSOR,
    Buttons,
    ChatState,
    GenerationParams,
    buttons_for,
    regenerate_turn,
    run_turn,
)
from services.webui.controller_client import ControllerClient
from shared.conversation import Conversation, get_conv_template
from tests.webui.stack import Stack

SHORT = GenerationParams(temperature=0.7, top_p=1.0, max_new_tokens=24)
# More new tokens than the tiny model's context of 256: its worker refuses the request.
BIG = GenerationParams(max_new_tokens=512)


@pytest.fixture
def client(stack: Stack) -> Iterator[ControllerClient]:
    with ControllerClient(stack.controller, worker_timeout=1.0, controller_timeout=1.0) as c:
        yield c


def test_client_lists_models_and_reads_the_template(stack: Stack, client: ControllerClient) -> None:
    assert stack.model in client.list_models()
    worker = client.worker_address(stack.model)
    assert worker == stack.worker
    assert client.worker_address("no-such-model") == ""
    conv = client.conversation_template(worker, stack.model)
    assert isinstance(conv, Conversation)
    assert conv.messages[conv.offset :] == []
    # Each call hands out its own copy of the cached template.
    conv.append_message(conv.roles[0], "x")
    assert client.conversation_template(worker, stack.model).messages[conv.offset :] == []


def test_turn_streams_and_stores_the_reply(stack: Stack, client: ControllerClient) -> None:
    state = ChatState()
    updates = list(run_turn(state, client, stack.model, "  Hello there  ", SHORT))

    first, *streamed, final = updates
    assert first.history[-1] == {"role": "assistant", "content": CURSOR}
    assert first.history[-2] == {"role": "user", "content": "  Hello there  "}
    assert first.textbox == ""
    assert streamed, "each snapshot should be shown as it arrives"
    assert all(u.history[-1]["content"].endswith(CURSOR) for u in streamed)
    assert final.error is None and final.textbox == ""
    assert final.reply is not None and final.reply == final.reply.strip()
    assert final.history == [
        {"role": "user", "content": "  Hello there  "},
        {"role": "assistant", "content": final.reply},
    ]
    assert state.model == stack.model and state.conv_id
    assert state.conversation is not None and state.conversation.num_rounds() == 1

    [*_, second] = run_turn(state, client, stack.model, "And again?", SHORT)
    assert second.error is None
    assert state.conversation.num_rounds() == 2
    assert [m["role"] for m in second.history] == ["user", "assistant"] * 2


def test_regenerate_replaces_the_last_reply(stack: Stack, client: ControllerClient) -> None:
    state = ChatState()
    list(run_turn(state, client, stack.model, "first", SHORT))
    [*_, second] = run_turn(state, client, stack.model, "second", SHORT)
    assert second.error is None and state.conversation is not None
    conv_id = state.conv_id

    updates = list(regenerate_turn(state, client, SHORT))

    assert updates[0].done is False and updates[0].history[-2:] == [
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": CURSOR},
    ]
    final = updates[-1]
    assert final.error is None and final.reply is not None and final.done
    assert state.conversation.num_rounds() == 2 and state.conv_id == conv_id
    assert [m["content"] for m in final.history[::2]] == ["first", "second"]
    assert buttons_for(state) == Buttons(vote=True, regenerate=True, clear=True)


def test_regenerate_after_a_failure_sends_the_failed_text_again(
    stack: Stack, client: ControllerClient
) -> None:
    state = ChatState()
    [*_, failed] = run_turn(state, client, stack.model, "too long an answer", BIG)
    assert failed.error is not None and state.failed_text == "too long an answer"
    assert buttons_for(state) == Buttons(vote=False, regenerate=True, clear=True)

    [*_, final] = regenerate_turn(state, client, SHORT)

    assert final.error is None and state.failed_text is None
    assert state.conversation is not None and state.conversation.num_rounds() == 1
    assert final.history[0] == {"role": "user", "content": "too long an answer"}


def test_model_without_worker_is_named(client: ControllerClient) -> None:
    state = ChatState()
    [update] = run_turn(state, client, "ghost", "hello", SHORT)
    assert update.error is not None
    assert update.error.startswith("No worker is serving model 'ghost' right now")
    assert update.history[-1]["content"] == f"⚠️ {update.error}"
    assert update.textbox == "hello"
    assert state.conversation is None


def test_worker_refusal_shows_its_text_and_keeps_history(
    stack: Stack, client: ControllerClient
) -> None:
    state = ChatState()
    [*_, ok] = run_turn(state, client, stack.model, "hi", SHORT)
    assert ok.error is None
    # The tiny model's context is 256 tokens: the worker answers 400 to 512 new tokens.
    too_many = GenerationParams(max_new_tokens=512)
    [*_, final] = run_turn(state, client, stack.model, "tell me more", too_many)

    assert final.error is not None
    assert final.error.startswith("The worker refused the request: max_new_tokens: 512")
    assert final.textbox == "tell me more"
    assert final.history[:2] == ok.history
    assert final.history[2] == {"role": "user", "content": "tell me more"}
    assert state.conversation is not None and state.conversation.num_rounds() == 1
    # The failed turn left nothing behind: the next one works and follows the first.
    [*_, again] = run_turn(state, client, stack.model, "tell me more", SHORT)
    assert again.error is None and state.conversation.num_rounds() == 2


def test_error_chunk_text_is_shown(stack: Stack, client: ControllerClient) -> None:
    # A controller without workers, registered as the worker of "relay", answers the stream with
    # an error chunk (error_code 50005) naming its own cause.
    stack.register(stack.empty_controller, "relay")
    state = ChatState(model="relay", conversation=get_conv_template("vicuna_v1.1"))
    [*_, final] = run_turn(state, client, "relay", "hello", SHORT)
    assert final.error is not None
    assert final.error == (
        "The model failed while answering: No worker is serving model 'relay'. (error_code 50005)"
    )
    assert final.textbox == "hello"
    assert state.conversation is not None and state.conversation.num_rounds() == 0


def test_unreachable_worker_is_named(
    stack: Stack, client: ControllerClient, dead_address: str
) -> None:
    stack.register(dead_address, "crashed")
    [update] = run_turn(ChatState(), client, "crashed", "hello", SHORT)
    assert update.error is not None
    assert update.error.startswith(
        f"The worker at {dead_address} serving 'crashed' could not be reached"
    )


def test_silent_worker_times_out(stack: Stack, client: ControllerClient, mute_server: str) -> None:
    stack.register(mute_server, "hung")
    # Template fetch first: it times out like any other worker call.
    [update] = run_turn(ChatState(), client, "hung", "hello", SHORT)
    assert (
        update.error
        == f"The worker at {mute_server} serving 'hung' did not answer in time. Try again."
    )
    # With the template known, the stream itself times out.
    state = ChatState(model="hung", conversation=get_conv_template("vicuna_v1.1"))
    [*_, final] = run_turn(state, client, "hung", "hello", SHORT)
    assert final.error == (
        f"The worker at {mute_server} serving 'hung' stayed silent for more than 1 s. Try again."
    )
    assert state.conversation is not None and state.conversation.num_rounds() == 0


def test_sampling_defaults_come_from_the_models_worker(
    stack: Stack, client: ControllerClient
) -> None:
    # The tiny model's generation_config.json has no sampling values; nobody serves the other.
    assert client.sampling_defaults(stack.model) == {}
    assert client.sampling_defaults("no-such-model") == {}
    assert client.sampling_defaults("") == {}


def test_sliders_start_at_the_models_defaults() -> None:
    from services.webui.chat_page import DEFAULTS, model_sampling

    class Client:
        def __init__(self, found: dict) -> None:
            self.found = found

        def sampling_defaults(self, model: str) -> dict:
            return self.found

    smollm2 = Client({"temperature": 0.2, "top_p": 0.9, "top_k": 50})
    assert model_sampling(smollm2, "m") == (0.2, 0.9)  # type: ignore[arg-type]
    assert model_sampling(Client({}), "m") == (DEFAULTS.temperature, DEFAULTS.top_p)  # type: ignore[arg-type]
    assert model_sampling(Client({"temperature": 1.5}), "m")[0] == 1.0  # type: ignore[arg-type]
