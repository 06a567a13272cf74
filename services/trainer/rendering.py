"""Render a training conversation exactly as serving will prompt the model, and find its replies.

Serving builds prompts with ``shared.conversation`` (``Conversation.get_prompt``); training uses
the same objects, so the text a model is trained on is the text it is later prompted with. Each
assistant reply is located by rendering the serving prompt that asks for it: the reply is what
follows that prompt in the rendered history. These are character positions in the rendered text;
token boundaries come later from the tokenizer's offsets (``masking.py``), never from counting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.contracts import CHAT_TEMPLATE, special_tokens_of
from shared.conversation import (
    Conversation,
    chat_template_conversation,
    default_template_name,
    get_conv_template,
)

VICUNA = "vicuna_v1.1"
USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant"}


class UnmaskableSample(Exception):
    """A conversation whose replies cannot be told apart from its prompt; counted, not trained."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ReplySpan:
    """Character span of one assistant turn in the rendered text.

    ``start``: first character the model generates (right after the serving prompt);
    ``content_end``: end of the reply text; the template's end-of-turn token comes after it;
    ``turn_end``: end of the assistant turn as the template renders it (may include a newline).
    """

    start: int
    content_end: int
    turn_end: int


@dataclass(frozen=True)
class RenderedConversation:
    text: str
    replies: tuple[ReplySpan, ...]


def template_name_for(model_path: str, has_chat_template: bool, requested: str) -> str:
    """``vicuna_v1.1`` or ``chat_template``, for a request's ``template`` field.

    ``auto`` follows serving's choice (``default_template_name``), except that a base which serving
    would prompt with ``one_shot`` (no chat template, not a CAMEL/Vicuna name) is trained with
    vicuna_v1.1, as the original trained every model.
    """
    if requested != "auto":
        return requested
    name = default_template_name(model_path, has_chat_template)
    return CHAT_TEMPLATE if name == CHAT_TEMPLATE else VICUNA


def training_conversation(template_name: str, tokenizer: Any) -> Conversation:
    """The conversation template to render with, adapted to the tokenizer.

    vicuna_v1.1 ends each reply with ``</s>``, LLaMA's EOS. For a tokenizer whose EOS is another
    token, the reply ends with that EOS instead, so that the trained model stops where serving
    stops (on the tokenizer's EOS id).
    """
    if template_name == CHAT_TEMPLATE:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template")
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        return chat_template_conversation(
            tokenizer.chat_template, special_tokens_of(tokenizer), eos
        )
    conv = get_conv_template(template_name)
    if tokenizer.eos_token and conv.sep2 != tokenizer.eos_token:
        conv.sep2 = str(tokenizer.eos_token)
    return conv


def split_turns(turns: list[dict[str, Any]]) -> tuple[str | None, list[str]]:
    """(system text or None, alternating user/assistant texts) from ``conversations`` records.

    A leading reply with no question is dropped, as the original did. Anything else out of
    order raises ``UnmaskableSample``.
    """
    if not isinstance(turns, list):
        raise UnmaskableSample("malformed", "conversations is not a list")
    system = None
    rest = list(turns)
    if rest and isinstance(rest[0], dict) and rest[0].get("from") == "system":
        system = str(rest.pop(0).get("value") or "")
    if rest and isinstance(rest[0], dict) and rest[0].get("from") in ASSISTANT_ROLES:
        rest = rest[1:]
    texts: list[str] = []
    for i, turn in enumerate(rest):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise UnmaskableSample("malformed", f"turn {i} has no text")
        role = turn.get("from")
        expected = USER_ROLES if i % 2 == 0 else ASSISTANT_ROLES
        if role not in USER_ROLES | ASSISTANT_ROLES:
            raise UnmaskableSample("unknown_role", f"turn {i} is from {role!r}")
        if role not in expected:
            raise UnmaskableSample("roles_not_alternating", f"turn {i} is from {role!r}")
        if not turn["value"].strip():
            raise UnmaskableSample("empty_turn", f"turn {i} ({role}) is empty")
        texts.append(turn["value"])
    if len(texts) < 2:
        raise UnmaskableSample("no_reply", "no assistant reply to train on")
    return system, texts


def _prompt(template: Conversation, system: str | None, texts: list[str | None]) -> str:
    conv = template.copy()
    if system is not None:
        conv.system = system
    for i, text in enumerate(texts):
        conv.append_message(conv.roles[i % 2], text)
    return conv.get_prompt()


def render_conversation(
    template: Conversation, turns: list[dict[str, Any]]
) -> RenderedConversation:
    """The whole conversation as one string, with the character span of every reply."""
    system, texts = split_turns(turns)
    full = _prompt(template, system, texts)
    replies = []
    for k in range(1, len(texts), 2):
        asking = _prompt(template, system, [*texts[:k], None])
        answered = _prompt(template, system, texts[: k + 1])
        if not (full.startswith(asking) and full.startswith(answered)):
            raise UnmaskableSample(
                "template_not_prefix", f"reply {k // 2} changes how earlier turns render"
            )
        reply = texts[k].strip()
        found = full.find(reply, len(asking), len(answered))
        if found < 0:
            raise UnmaskableSample("reply_not_rendered", f"reply {k // 2} not found verbatim")
        replies.append(ReplySpan(len(asking), found + len(reply), len(answered)))
    return RenderedConversation(full, tuple(replies))
