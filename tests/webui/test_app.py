"""The page as users and API clients see it: a real ``python -m services.webui`` process in front
of real controller and worker processes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client

from services.webui.app import model_choices
from services.webui.chat_page import shown_as_typed
from services.webui.controller_client import ControllerClient
from tests.support import ProcessGroup
from tests.webui.stack import Stack, start_webui


@pytest.fixture(scope="module")
def webui(stack: Stack) -> Iterator[str]:
    with ProcessGroup(stack.logs) as group:
        conv_logs = stack.logs / "conv"
        options = ["--concurrency-count", "2", "--model-list-mode", "reload"]
        yield start_webui(group, stack.controller, conv_logs, *options)


def _content(message: dict) -> str:
    """Text of a chatbot message as the API returns it (a list of typed parts in Gradio 6)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def test_page_is_served_and_lists_the_model(webui: str, stack: Stack) -> None:
    page = httpx.get(f"{webui}/", timeout=10)
    assert page.status_code == 200
    assert "camel-chat" in page.text
    config = httpx.get(f"{webui}/config", timeout=10).json()
    assert config["title"] == "camel-chat"
    tabs = [c["props"]["label"] for c in config["components"] if c["type"] == "tabitem"]
    assert tabs == ["Chat", "Training", "Models"]
    [dropdown] = [c for c in config["components"] if c["props"].get("elem_id") == "model-select"]
    assert [stack.model, stack.model] in dropdown["props"]["choices"]
    assert dropdown["props"]["value"] == stack.model


def test_chat_endpoint_streams_a_reply_then_names_a_missing_worker(
    webui: str, stack: Stack
) -> None:
    client = Client(webui, verbose=False)
    # Greedy, so that the reply (gibberish from random weights) is the same on every run.
    job = client.submit("Hello", stack.model, 0.0, 1.0, 32, api_name="/chat")
    history, textbox, *_ = job.result(timeout=60)
    outputs = job.outputs()

    assert len(outputs) >= 3, "cursor first, then each snapshot, then the stored reply"
    assert _content(outputs[0][0][-1]) == "▌"
    assert textbox == ""
    assert [m["role"] for m in history] == ["user", "assistant"]
    # The user's text as typed (never Markdown), the reply as Markdown.
    assert _content(history[0]) == shown_as_typed("Hello")
    reply = _content(history[1])
    assert reply.strip() and not reply.endswith("▌")
    [log_file] = (stack.logs / "conv").glob("*-conv.json")
    [record] = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert record["type"] == "chat" and record["model"] == stack.model
    assert record["gen_params"] == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 32}
    assert record["state"]["messages"][-1][1].split() == reply.split()

    history, textbox, *_ = client.predict("Hello", "ghost", 0.7, 1.0, 32, api_name="/chat")
    assert textbox == "Hello"
    assert "No worker is serving model 'ghost' right now" in _content(history[-1])
    assert "HIGH TRAFFIC" not in _content(history[-1])


def test_page_load_model_choices(stack: Stack, dead_address: str) -> None:
    with ControllerClient(stack.controller) as client:
        assert model_choices(client, "reload", [], None, None) == ([stack.model], stack.model)
        stack.register(dead_address, "a-later-model")
        choices, value = model_choices(client, "reload", [], stack.model, "a-later-model")
        assert choices == ["a-later-model", stack.model]
        assert value == "a-later-model"
        # An unknown ?model= falls back to the current choice.
        assert model_choices(client, "reload", [], stack.model, "nope")[1] == stack.model
        # "once" keeps the start-up list: the later model is not offered.
        assert model_choices(client, "once", [stack.model], None, "a-later-model") == (
            [stack.model],
            stack.model,
        )
