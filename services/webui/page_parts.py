"""Small Gradio pieces every tab uses."""

from __future__ import annotations

from typing import Any

import gradio as gr

# Events that are page plumbing, not an API: left out of the page's API, no progress overlay.
PRIVATE: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}


def notice(message: str) -> str:
    """A failure or refusal, shown as Markdown."""
    return f"⚠️ {message}"


def free_choice(choices: list[str], label: str, elem_id: str, **kwargs: Any) -> gr.Dropdown:
    """A dropdown that also takes a typed value: its list can be stale or incomplete."""
    return gr.Dropdown(
        choices,
        label=label,
        interactive=True,
        allow_custom_value=True,
        elem_id=elem_id,
        **kwargs,
    )
