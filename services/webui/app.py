"""The Gradio page: layout and event wiring only; the chat itself lives in ``chat.py``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from services.webui.chat import ChatState, GenerationParams, choose_model, run_turn
from services.webui.controller_client import ControllerClient, ServiceError
from shared.settings import WebUISettings

log = logging.getLogger(__name__)

TITLE = "camel-chat"
DEFAULTS = GenerationParams()


def fetch_models(client: ControllerClient) -> list[str]:
    """The model list, or an empty one while the controller is down (the page still loads)."""
    try:
        return client.list_models()
    except ServiceError as exc:
        log.warning("event=model_list_failed error=%s", exc)
        return []


def model_choices(
    client: ControllerClient,
    mode: str,
    startup_models: list[str],
    current: str | None,
    requested: str | None,
) -> tuple[list[str], str]:
    """The dropdown on page load: choices (fresh in "reload" mode) and the model to select.

    ``requested`` comes from ``?model=`` in the page URL and wins when that model is listed.
    """
    choices = fetch_models(client) if mode == "reload" else startup_models
    return choices, choose_model(choices, requested, current)


def build_demo(settings: WebUISettings, client: ControllerClient) -> gr.Blocks:
    """The chat page: model picker, chatbot, textbox + Send, Clear, and sampling parameters."""
    startup_models = fetch_models(client)

    with gr.Blocks(title=TITLE) as demo:
        state = gr.State(ChatState())
        gr.Markdown(f"# {TITLE}")
        model = gr.Dropdown(
            choices=startup_models,
            value=choose_model(startup_models, None),
            label="Model",
            show_label=False,
            interactive=True,
            # The list can be stale (mode "once", workers started later): a typed name still works.
            allow_custom_value=True,
        )
        chatbot = gr.Chatbot(label="Scroll down and start chatting", elem_id="chatbot", height=550)
        with gr.Row():
            textbox = gr.Textbox(
                label="Message",
                show_label=False,
                placeholder="Enter text and press ENTER",
                scale=8,
                container=False,
            )
            send = gr.Button("Send", variant="primary", scale=1, min_width=80)
        with gr.Row():
            clear = gr.Button("🗑️  Clear history")
        with gr.Accordion("Parameters", open=False):
            temperature = gr.Slider(
                0.0, 1.0, value=DEFAULTS.temperature, step=0.1, label="Temperature"
            )
            top_p = gr.Slider(0.0, 1.0, value=DEFAULTS.top_p, step=0.1, label="Top P")
            max_tokens = gr.Slider(
                16, 1024, value=DEFAULTS.max_new_tokens, step=16, label="Max output tokens"
            )

        def on_load(current: str | None, request: gr.Request) -> Any:
            requested = request.query_params.get("model") if request else None
            choices, value = model_choices(
                client, settings.model_list_mode, startup_models, current, requested
            )
            return gr.Dropdown(choices=choices, value=value)

        def respond(
            chat: ChatState,
            text: str,
            model_name: str | None,
            temp: float,
            top: float,
            max_new_tokens: float,
        ) -> Iterator[tuple[list[dict[str, str]], str, ChatState]]:
            params = GenerationParams(float(temp), float(top), int(max_new_tokens))
            for update in run_turn(chat, client, model_name or "", text, params):
                yield update.history, update.textbox, chat

        def clear_history() -> tuple[ChatState, list[dict[str, str]], str]:
            return ChatState(), [], ""

        demo.load(on_load, inputs=[model], outputs=[model], api_visibility="private")
        chat_inputs = [state, textbox, model, temperature, top_p, max_tokens]
        chat_outputs = [chatbot, textbox, state]
        send.click(respond, chat_inputs, chat_outputs, api_name="chat", show_progress="hidden")
        textbox.submit(
            respond, chat_inputs, chat_outputs, api_visibility="private", show_progress="hidden"
        )
        clear.click(clear_history, None, [state, chatbot, textbox], api_visibility="private")
        model.change(clear_history, None, [state, chatbot, textbox], api_visibility="private")

    demo.queue(default_concurrency_limit=settings.concurrency_count)
    return demo
