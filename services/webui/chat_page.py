"""The chat tab: layout and event wiring; the chat itself lives in ``chat.py``."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.webui.chat import (
    Buttons,
    ChatMessages,
    ChatState,
    GenerationParams,
    Moderator,
    TurnUpdate,
    buttons_for,
    regenerate_turn,
    run_turn,
)
from services.webui.chat_log import ChatLog, VoteKind, chat_record, vote_record
from services.webui.controller_client import ControllerClient
from services.webui.page_parts import free_choice

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


@dataclass
class ActionButtons:
    """Upvote, Downvote, Flag, Regenerate, Clear history: all start disabled."""

    upvote: gr.Button
    downvote: gr.Button
    flag: gr.Button
    regenerate: gr.Button
    clear: gr.Button

    def all(self) -> list[gr.Button]:
        """In the order of ``button_updates``."""
        return [self.upvote, self.downvote, self.flag, self.regenerate, self.clear]


@dataclass
class Sliders:
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Slider

    def all(self) -> list[gr.Slider]:
        return [self.temperature, self.top_p, self.max_tokens]


def button_updates(b: Buttons) -> list[Any]:
    """The five action buttons' updates, in ``ActionButtons.all()`` order."""
    return [
        gr.Button(interactive=b.vote),
        gr.Button(interactive=b.vote),
        gr.Button(interactive=b.vote),
        gr.Button(interactive=b.regenerate),
        gr.Button(interactive=b.clear),
    ]


# The user's own text keeps its look: FastChat's patched Chatbot showed it in a <pre>.
USER_TEXT_CSS = """
#chatbot pre.user-text {
  font-family: var(--font); white-space: pre-wrap; overflow-wrap: anywhere;
  margin: 0; padding: 0; border: 0; background: none; font-size: inherit;
}
"""


def shown_as_typed(text: str) -> str:
    """A user's message as the chatbot shows it: verbatim, never read as Markdown or HTML.

    The chatbot renders Markdown (with sanitised HTML) for every message; a reply should be, the
    user's text should not (``**x**`` stays ``**x**``, ``<img onerror=...>`` stays text). Escaped
    inside a ``<pre>`` block, Markdown leaves it alone and the browser shows it as typed.
    """
    return f'<pre class="user-text">{html.escape(text, quote=False)}</pre>'


def for_display(history: ChatMessages) -> ChatMessages:
    """The chatbot's messages: users' as typed, replies as Markdown."""
    return [
        {**m, "content": shown_as_typed(m["content"])} if m["role"] == "user" else m
        for m in history
    ]


def _client_ip(request: gr.Request | None) -> str:
    if request is None or request.client is None:
        return ""
    return request.client.host or ""


def _params_of(temp: float, top: float, max_new: float) -> GenerationParams:
    return GenerationParams(float(temp), float(top), int(max_new))


class ChatActions:
    """The chat tab's event handlers: turns streamed to the chatbot, votes, clearing.

    Every finished turn and every vote is appended to the conversation log.
    """

    def __init__(
        self, client: ControllerClient, chat_log: ChatLog, moderator: Moderator | None = None
    ) -> None:
        self.client = client
        self.chat_log = chat_log
        self.moderator = moderator

    def show(
        self,
        chat: ChatState,
        updates: Iterator[TurnUpdate],
        params: GenerationParams,
        request: gr.Request | None,
    ) -> Iterator[list[Any]]:
        """Outputs: chatbot, textbox, state, the five buttons."""
        for update in updates:
            if update.done and update.reply is not None and update.started_at:
                self.chat_log.append(
                    chat_record(
                        chat,
                        params,
                        update.started_at,
                        update.finished_at or 0.0,
                        _client_ip(request),
                    )
                )
            b = buttons_for(chat, busy=not update.done)
            yield [for_display(update.history), update.textbox, chat, *button_updates(b)]

    def respond(
        self,
        chat: ChatState,
        text: str,
        model_name: str | None,
        temp: float,
        top: float,
        max_new: float,
        request: gr.Request,
    ) -> Iterator[list[Any]]:
        params = _params_of(temp, top, max_new)
        turn = run_turn(chat, self.client, model_name or "", text, params, self.moderator)
        yield from self.show(chat, turn, params, request)

    def redo(
        self, chat: ChatState, temp: float, top: float, max_new: float, request: gr.Request
    ) -> Iterator[list[Any]]:
        params = _params_of(temp, top, max_new)
        turn = regenerate_turn(chat, self.client, params, self.moderator)
        yield from self.show(chat, turn, params, request)

    def vote(self, kind: VoteKind) -> Callable[..., list[Any]]:
        """The handler of one vote button. Outputs: textbox, state, the five buttons."""

        def record(chat: ChatState, model_name: str | None, request: gr.Request) -> list[Any]:
            self.chat_log.append(
                vote_record(kind, model_name or chat.model, chat, _client_ip(request))
            )
            chat.voted = True
            log.info("event=chat_vote kind=%s conv_id=%s model=%s", kind, chat.conv_id, chat.model)
            return ["", chat, *button_updates(buttons_for(chat))]

        return record

    @staticmethod
    def clear_history() -> list[Any]:
        """Outputs: state, chatbot, textbox, the five buttons."""
        return [ChatState(), [], "", *button_updates(Buttons())]


def build_model_picker(models: list[str], selected: str) -> gr.Dropdown:
    # The list can be stale (mode "once", workers started later): a typed name still works.
    return free_choice(models, "Model", "model-select", value=selected, show_label=False)


def build_conversation() -> tuple[gr.Chatbot, gr.Textbox, gr.Button]:
    """The chatbot, then the message box with its Send button."""
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
    return chatbot, textbox, send


def build_action_buttons() -> ActionButtons:
    with gr.Row():
        return ActionButtons(
            upvote=gr.Button("👍  Upvote", interactive=False, elem_id="upvote"),
            downvote=gr.Button("👎  Downvote", interactive=False, elem_id="downvote"),
            flag=gr.Button("⚠️  Flag", interactive=False, elem_id="flag"),
            regenerate=gr.Button("🔄  Regenerate", interactive=False, elem_id="regenerate"),
            clear=gr.Button("🗑️  Clear history", interactive=False, elem_id="clear"),
        )


def model_sampling(client: ControllerClient, model: str | None) -> tuple[float, float]:
    """Temperature and top_p for the sliders: the model's own defaults (its
    generation_config.json), else the page's; kept within the sliders' range."""
    found = client.sampling_defaults(model or "")
    temperature = float(found.get("temperature", DEFAULTS.temperature))
    top_p = float(found.get("top_p", DEFAULTS.top_p))
    return min(max(temperature, 0.0), 1.0), min(max(top_p, 0.0), 1.0)


def build_sliders(client: ControllerClient, selected: str) -> Sliders:
    """The sampling parameters, in a closed accordion. Their values on each page load are the
    selected model's defaults (a callable value is evaluated per load)."""
    with gr.Accordion("Parameters", open=False):
        return Sliders(
            temperature=gr.Slider(
                0.0,
                1.0,
                value=lambda: model_sampling(client, selected)[0],
                step=0.05,
                label="Temperature",
                elem_id="temperature",
            ),
            top_p=gr.Slider(
                0.0,
                1.0,
                value=lambda: model_sampling(client, selected)[1],
                step=0.05,
                label="Top P",
                elem_id="top-p",
            ),
            max_tokens=gr.Slider(
                16,
                1024,
                value=DEFAULTS.max_new_tokens,
                step=16,
                label="Max output tokens",
                elem_id="max-tokens",
            ),
        )


def wire_chat_events(
    actions: ChatActions, tab: ChatTab, send: gr.Button, buttons: ActionButtons, sliders: Sliders
) -> None:
    """Send / Enter and Regenerate stream a turn; the votes, Clear and a model switch."""
    chat_inputs = [tab.state, tab.textbox, tab.model, *sliders.all()]
    chat_outputs = [tab.chatbot, tab.textbox, tab.state, *buttons.all()]
    respond = actions.respond
    send.click(respond, chat_inputs, chat_outputs, api_name="chat", show_progress="hidden")
    tab.textbox.submit(
        respond, chat_inputs, chat_outputs, api_visibility="private", show_progress="hidden"
    )
    buttons.regenerate.click(
        actions.redo,
        [tab.state, *sliders.all()],
        chat_outputs,
        api_name="regenerate",
        show_progress="hidden",
    )
    votes = ((buttons.upvote, "upvote"), (buttons.downvote, "downvote"), (buttons.flag, "flag"))
    for button, kind in votes:
        button.click(
            actions.vote(kind),  # type: ignore[arg-type]
            [tab.state, tab.model],
            [tab.textbox, tab.state, *buttons.all()],
            api_name=kind,
        )
    reset_outputs = [tab.state, tab.chatbot, tab.textbox, *buttons.all()]
    buttons.clear.click(actions.clear_history, None, reset_outputs, api_visibility="private")
    # ``input``, not ``change``: only the user's own switch clears. ``change`` also fires when
    # the page load or the model-list refresh sets the dropdown, which would wipe a chat that
    # is already under way.
    tab.model.input(actions.clear_history, None, reset_outputs, api_visibility="private")
    # Another model (picked, or set by the page load's ?model=): its own sampling defaults.
    tab.model.change(
        lambda name: list(model_sampling(actions.client, name)),
        [tab.model],
        [sliders.temperature, sliders.top_p],
        api_visibility="private",
        show_progress="hidden",
    )


def build_chat_tab(
    client: ControllerClient,
    chat_log: ChatLog,
    models: list[str],
    selected: str,
    moderator: Moderator | None = None,
) -> ChatTab:
    """Terms, model picker, chatbot, textbox + Send, vote/regenerate/clear, sampling parameters,
    license."""
    gr.Markdown(TERMS)
    state = gr.State(ChatState())
    model = build_model_picker(models, selected)
    chatbot, textbox, send = build_conversation()
    buttons = build_action_buttons()
    sliders = build_sliders(client, selected)
    gr.Markdown(LICENSE)
    tab = ChatTab(model=model, state=state, chatbot=chatbot, textbox=textbox)
    wire_chat_events(ChatActions(client, chat_log, moderator), tab, send, buttons, sliders)
    return tab
