"""Pick the conversation template a served model gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.contracts import CHAT_TEMPLATE, TRAINING_SUMMARY_FILE, special_tokens_of
from shared.conversation import (
    Conversation,
    chat_template_conversation,
    default_template_name,
    get_conv_template,
)


def trained_template(model_path: str) -> str:
    """The template a model fine-tuned here was trained with, or "" when unknown.

    A model must be prompted the way it was trained: a base without a chat template is trained
    with vicuna_v1.1, and serving it with the name-based default (one_shot) would not match.
    """
    summary = Path(model_path) / TRAINING_SUMMARY_FILE
    if not summary.is_file():
        return ""
    try:
        return str(json.loads(summary.read_text()).get("template") or "")
    except (ValueError, AttributeError):
        return ""


def conversation_for(model_path: str, tokenizer: Any, override: str = "") -> Conversation:
    """``override`` names a registered template or ``chat_template``; empty means automatic."""
    has_chat_template = bool(getattr(tokenizer, "chat_template", None))
    name = (
        override
        or trained_template(model_path)
        or default_template_name(model_path, has_chat_template)
    )
    if name == CHAT_TEMPLATE:
        if not has_chat_template:
            raise ValueError(f"the tokenizer of {model_path} has no chat template")
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        return chat_template_conversation(
            tokenizer.chat_template, special_tokens_of(tokenizer), eos
        )
    return get_conv_template(name)
