"""The Gradio page: three tabs (chat, training, models) wired to the controller's public APIs.

Each tab lives in its own module (``chat_page``, ``training_page``, ``models_page``); this one only
assembles them and handles what spans tabs: the model list and ``?model=`` preselection.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from services.webui.chat import Moderator, choose_model
from services.webui.chat_log import ChatLog
from services.webui.chat_page import USER_TEXT_CSS, ChatTab, build_chat_tab
from services.webui.controller_client import ControllerClient
from services.webui.http_client import ServiceError
from services.webui.management_client import ManagementClient
from services.webui.models_page import build_models_tab
from services.webui.training_page import PROGRESS_CSS, build_training_tab
from shared.settings import WebUISettings

log = logging.getLogger(__name__)

TITLE = "camel-chat"


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


class ModelList:
    """The chat's model dropdown across page loads and refreshes."""

    def __init__(self, client: ControllerClient, mode: str, startup_models: list[str]) -> None:
        self.client = client
        self.mode = mode
        self.startup_models = startup_models

    def on_load(self, current: str | None, request: gr.Request) -> Any:
        """Fresh choices (in "reload" mode), and ``?model=`` from the URL preselected."""
        requested = request.query_params.get("model") if request else None
        choices, value = model_choices(
            self.client, self.mode, self.startup_models, current, requested
        )
        return gr.Dropdown(choices=choices, value=value)

    def refresh_model_list(self, known: list[str] | None) -> list[Any]:
        """New models (a deployment finished, a worker started) join the dropdown; the
        selection, and so the conversation, stays. Outputs: the dropdown, the list it shows."""
        if self.mode != "reload":
            return [gr.skip(), known]
        models = fetch_models(self.client)
        if not models or models == known:
            return [gr.skip(), known]
        return [gr.Dropdown(choices=models), models]


def build_tabs(
    settings: WebUISettings,
    client: ControllerClient,
    management: ManagementClient,
    chat_log: ChatLog,
    startup_models: list[str],
    moderator: Moderator | None = None,
) -> ChatTab:
    with gr.Tabs():
        with gr.Tab("Chat", id="chat"):
            selected = choose_model(startup_models, None)
            chat = build_chat_tab(client, chat_log, startup_models, selected, moderator)
        with gr.Tab("Training", id="training"):
            build_training_tab(management, settings)
        with gr.Tab("Models", id="models"):
            build_models_tab(management, settings)
    return chat


def wire_model_list(
    demo: gr.Blocks, model: gr.Dropdown, model_list: ModelList, refresh_seconds: float
) -> None:
    """The dropdown is set on page load, then refreshed at least 5 s apart."""
    timer = gr.Timer(max(refresh_seconds, 5.0))
    known_models = gr.State(None)
    demo.load(model_list.on_load, inputs=[model], outputs=[model], api_visibility="private")
    timer.tick(
        model_list.refresh_model_list,
        [known_models],
        [model, known_models],
        api_visibility="private",
        show_progress="hidden",
    )


def build_demo(
    settings: WebUISettings,
    client: ControllerClient,
    management: ManagementClient,
    chat_log: ChatLog,
    moderator: Moderator | None = None,
) -> gr.Blocks:
    startup_models = fetch_models(client)
    model_list = ModelList(client, settings.model_list_mode, startup_models)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}")
        chat = build_tabs(settings, client, management, chat_log, startup_models, moderator)
        wire_model_list(demo, chat.model, model_list, settings.refresh_seconds)
    demo.queue(default_concurrency_limit=settings.concurrency_count)
    return demo


# Passed to ``launch`` (Gradio 6 takes page CSS there).
CSS = PROGRESS_CSS + USER_TEXT_CSS
