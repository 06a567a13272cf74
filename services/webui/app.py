"""The Gradio page: three tabs (chat, training, models) wired to the controller's public APIs.

Each tab lives in its own module (``chat_page``, ``training_page``, ``models_page``); this one only
assembles them and handles what spans tabs: the model list and ``?model=`` preselection.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from services.webui.chat import choose_model
from services.webui.chat_log import ChatLog
from services.webui.chat_page import build_chat_tab
from services.webui.controller_client import ControllerClient, ServiceError
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


def build_demo(
    settings: WebUISettings,
    client: ControllerClient,
    management: ManagementClient,
    chat_log: ChatLog,
) -> gr.Blocks:
    startup_models = fetch_models(client)

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat = build_chat_tab(
                    client, chat_log, startup_models, choose_model(startup_models, None)
                )
            with gr.Tab("Training", id="training"):
                build_training_tab(management, settings)
            with gr.Tab("Models", id="models"):
                build_models_tab(management, settings)
        model_list_timer = gr.Timer(max(settings.refresh_seconds, 5.0))

        def on_load(current: str | None, request: gr.Request) -> Any:
            requested = request.query_params.get("model") if request else None
            choices, value = model_choices(
                client, settings.model_list_mode, startup_models, current, requested
            )
            return gr.Dropdown(choices=choices, value=value)

        def refresh_model_list(known: list[str] | None) -> list[Any]:
            """New models (a deployment finished, a worker started) join the dropdown; the
            selection, and so the conversation, stays."""
            if settings.model_list_mode != "reload":
                return [gr.skip(), known]
            models = fetch_models(client)
            if not models or models == known:
                return [gr.skip(), known]
            return [gr.Dropdown(choices=models), models]

        known_models = gr.State(None)
        demo.load(on_load, inputs=[chat.model], outputs=[chat.model], api_visibility="private")
        model_list_timer.tick(
            refresh_model_list,
            [known_models],
            [chat.model, known_models],
            api_visibility="private",
            show_progress="hidden",
        )

    demo.queue(default_concurrency_limit=settings.concurrency_count)
    return demo


# Passed to ``launch`` (Gradio 6 takes page CSS there).
CSS = PROGRESS_CSS
