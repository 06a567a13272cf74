"""The chat tab: layout and event wiring; the chat itself lives in ``chat.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.webui.chat import (
    Buttons,
    ChatState,
    GenerationParams,
    TurnUpdate,
    buttons_for,
    regenerate_turn,
    run_turn,
)
from services.webui.chat_log import ChatLog, VoteKind, chat_record, vote_record
from services.webui.controller_client import ControllerClient

log = logging.getLogger(__name__)

DEFAULTS = GenerationParams()

TERMS = (
    "**Terms of use.** A research preview for non-commercial use, with limited safety measures: "
    "it may produce offensive content. Do not use it for illegal, harmful, violent, racist or "
    "sexual purposes. **Conversations and votes are logged** for research and may be shared."
)
LICENSE = (
    "**License.** A non-commercial research preview, subject to the licenses of the models "
    "served (e.g. the LLaMA model license) and the terms of use of the data they were trained on."
)


@dataclass
class ChatTab:
    """The components other tabs and the page load need."""

    model: gr.Dropdown
    state: gr.State
    chatbot: gr.Chatbot
    textbox: gr.Textbox


def _client_ip(request: gr.Request | None) -> str:
    if request is None or request.client is None:
        return ""
    return request.client.host or ""


def build_chat_tab(
    client: ControllerClient,
    chat_log: ChatLog,
    models: list[str],
    selected: str,
) -> ChatTab:
    """Model picker, chatbot, textbox + Send, vote/regenerate/clear, sampling parameters."""
    gr.Markdown(TERMS)
    state = gr.State(ChatState())
    model = gr.Dropdown(
        choices=models,
        value=selected,
        label="Model",
        show_label=False,
        interactive=True,
        # The list can be stale (mode "once", workers started later): a typed name still works.
        allow_custom_value=True,
        elem_id="model-select",
    )
    chatbot = gr.Chatbot(
        label="Scroll down and start chatting",
        elem_id="chatbot",
        height=550,
        feedback_options=None,
        buttons=["copy"],
    )
    with gr.Row():
        textbox = gr.Textbox(
            label="Message",
            show_label=False,
            placeholder="Enter text and press ENTER",
            scale=8,
            container=False,
            elem_id="chat-input",
        )
        send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
    with gr.Row():
        upvote = gr.Button("👍  Upvote", interactive=False, elem_id="upvote")
        downvote = gr.Button("👎  Downvote", interactive=False, elem_id="downvote")
        flag = gr.Button("⚠️  Flag", interactive=False, elem_id="flag")
        regenerate = gr.Button("🔄  Regenerate", interactive=False, elem_id="regenerate")
        clear = gr.Button("🗑️  Clear history", interactive=False, elem_id="clear")
    with gr.Accordion("Parameters", open=False):
        temperature = gr.Slider(0.0, 1.0, value=DEFAULTS.temperature, step=0.1, label="Temperature")
        top_p = gr.Slider(0.0, 1.0, value=DEFAULTS.top_p, step=0.1, label="Top P")
        max_tokens = gr.Slider(
            16,
            1024,
            value=DEFAULTS.max_new_tokens,
            step=16,
            label="Max output tokens",
            elem_id="max-tokens",
        )
    gr.Markdown(LICENSE)

    buttons = [upvote, downvote, flag, regenerate, clear]

    def button_updates(b: Buttons) -> list[Any]:
        return [
            gr.Button(interactive=b.vote),
            gr.Button(interactive=b.vote),
            gr.Button(interactive=b.vote),
            gr.Button(interactive=b.regenerate),
            gr.Button(interactive=b.clear),
        ]

    def show(
        chat: ChatState,
        updates: Iterator[TurnUpdate],
        params: GenerationParams,
        request: gr.Request | None,
    ) -> Iterator[list[Any]]:
        for update in updates:
            if update.done and update.reply is not None and update.started_at:
                chat_log.append(
                    chat_record(
                        chat,
                        params,
                        update.started_at,
                        update.finished_at or 0.0,
                        _client_ip(request),
                    )
                )
            b = buttons_for(chat, busy=not update.done)
            yield [update.history, update.textbox, chat, *button_updates(b)]

    def params_of(temp: float, top: float, max_new: float) -> GenerationParams:
        return GenerationParams(float(temp), float(top), int(max_new))

    def respond(
        chat: ChatState,
        text: str,
        model_name: str | None,
        temp: float,
        top: float,
        max_new: float,
        request: gr.Request,
    ) -> Iterator[list[Any]]:
        params = params_of(temp, top, max_new)
        yield from show(
            chat, run_turn(chat, client, model_name or "", text, params), params, request
        )

    def redo(
        chat: ChatState, temp: float, top: float, max_new: float, request: gr.Request
    ) -> Iterator[list[Any]]:
        params = params_of(temp, top, max_new)
        yield from show(chat, regenerate_turn(chat, client, params), params, request)

    def vote(kind: VoteKind) -> Callable[..., list[Any]]:
        def record(chat: ChatState, model_name: str | None, request: gr.Request) -> list[Any]:
            chat_log.append(vote_record(kind, model_name or chat.model, chat, _client_ip(request)))
            chat.voted = True
            log.info("event=chat_vote kind=%s conv_id=%s model=%s", kind, chat.conv_id, chat.model)
            return ["", chat, *button_updates(buttons_for(chat))]

        return record

    def clear_history() -> list[Any]:
        return [ChatState(), [], "", *button_updates(Buttons())]

    chat_inputs = [state, textbox, model, temperature, top_p, max_tokens]
    chat_outputs = [chatbot, textbox, state, *buttons]
    send.click(respond, chat_inputs, chat_outputs, api_name="chat", show_progress="hidden")
    textbox.submit(
        respond, chat_inputs, chat_outputs, api_visibility="private", show_progress="hidden"
    )
    regenerate.click(
        redo,
        [state, temperature, top_p, max_tokens],
        chat_outputs,
        api_name="regenerate",
        show_progress="hidden",
    )
    for button, kind in ((upvote, "upvote"), (downvote, "downvote"), (flag, "flag")):
        button.click(
            vote(kind),  # type: ignore[arg-type]
            [state, model],
            [textbox, state, *buttons],
            api_name=kind,
        )
    reset_outputs = [state, chatbot, textbox, *buttons]
    clear.click(clear_history, None, reset_outputs, api_visibility="private")
    # ``input``, not ``change``: only the user's own switch clears. ``change`` also fires when
    # the page load or the model-list refresh sets the dropdown, which would wipe a chat that
    # is already under way.
    model.input(clear_history, None, reset_outputs, api_visibility="private")
    return ChatTab(model=model, state=state, chatbot=chatbot, textbox=textbox)
