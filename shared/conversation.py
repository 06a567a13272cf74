"""Conversation templates: how a chat history becomes the prompt a model was trained on.

Three kinds exist:
- ``vicuna_v1.1``: the CAMEL training and serving format (``USER: ... ASSISTANT: ...</s>``);
- ``one_shot``: FastChat's ``### Human:`` fallback with a built-in example, for unknown models;
- a model's own tokenizer chat template (Jinja, e.g. ChatML for SmolLM2), carried as source text so
  that clients can render prompts without loading a tokenizer.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from shared import fastchat_styles


class SeparatorStyle(enum.StrEnum):
    """FastChat 0.2.36's styles (``shared/fastchat_styles.py``) plus a tokenizer's chat template."""

    ADD_COLON_SINGLE = "add_colon_single"
    ADD_COLON_TWO = "add_colon_two"
    ADD_COLON_SPACE_SINGLE = "add_colon_space_single"
    NO_COLON_SINGLE = "no_colon_single"
    NO_COLON_TWO = "no_colon_two"
    ADD_NEW_LINE_SINGLE = "add_new_line_single"
    LLAMA2 = "llama2"
    CHATGLM = "chatglm"
    CHATML = "chatml"
    CHATINTERN = "chatintern"
    DOLLY = "dolly"
    RWKV = "rwkv"
    PHOENIX = "phoenix"
    ROBIN = "robin"
    FALCON_CHAT = "falcon_chat"
    CHATGLM3 = "chatglm3"
    DEEPSEEK_CHAT = "deepseek_chat"
    METAMATH = "metamath"
    YUAN2 = "yuan2"
    CHAT_TEMPLATE = "chat_template"


@dataclass
class Conversation:
    """A chat history plus the rules that turn it into a prompt.

    The fields are FastChat 0.2.36's (``system`` is its ``system_message``), so that ``dict()`` is
    what a FastChat worker answers on ``/worker_get_conv_template`` and FastChat's clients render
    the same prompt from it.
    """

    name: str
    system: str = ""
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    messages: list[list[str | None]] = field(default_factory=list)
    # Leading few-shot messages that belong to the prompt but are not shown to users.
    offset: int = 0
    sep_style: SeparatorStyle = SeparatorStyle.ADD_COLON_SINGLE
    sep: str = "\n"
    sep2: str | None = None
    stop_str: str | list[str] | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    # How the system message is framed ("{system_message}" is replaced), as in FastChat.
    system_template: str = "{system_message}"
    # Jinja source of a tokenizer chat template (CHAT_TEMPLATE style only).
    chat_template: str | None = None
    # Special-token strings the chat template may reference (bos_token, eos_token, ...).
    special_tokens: dict[str, str] = field(default_factory=dict)
    # CHAT_TEMPLATE only: the FastChat style whose rendering of this conversation's fields gives
    # the chat template's prompt (see ``fastchat_equivalent``); None when none does.
    wire_style: SeparatorStyle | None = None
    # Whether FastChat clients, rendering ``fastchat_style()`` from the fields, build exactly
    # the prompts this conversation builds (always, except for some chat templates).
    fastchat_exact: bool = True

    def append_message(self, role: str, text: str | None) -> None:
        self.messages.append([role, text])

    def update_last_message(self, text: str | None) -> None:
        self.messages[-1][1] = text

    def get_prompt(self) -> str:
        """Render the whole history; an empty last message is the slot the model will fill."""
        if self.sep_style == SeparatorStyle.CHAT_TEMPLATE:
            return self._render_chat_template()
        return self._render_fastchat(self.sep_style)

    def _render_fastchat(self, style: SeparatorStyle) -> str:
        parts = fastchat_styles.Parts(
            name=self.name,
            system_template=self.system_template,
            system_message=self.system,
            roles=self.roles,
            messages=self.messages,
            sep=self.sep,
            sep2=self.sep2 or "",
        )
        return fastchat_styles.render(style.value, parts)

    def _render_chat_template(self) -> str:
        if not self.chat_template:
            raise ValueError(f"template {self.name!r} has no chat_template source")
        messages = self.to_openai_api_messages(include_few_shot=True)
        open_slot = bool(self.messages) and not self.messages[-1][1]
        return render_chat_template(
            self.chat_template,
            messages,
            add_generation_prompt=open_slot,
            **self.special_tokens,
        )

    def to_openai_api_messages(self, include_few_shot: bool = False) -> list[dict[str, str]]:
        """System message first (if any), then user/assistant turns; open slots are skipped."""
        out: list[dict[str, str]] = []
        if self.system:
            out.append({"role": "system", "content": self.system})
        start = 0 if include_few_shot else self.offset
        for i, (_, text) in enumerate(self.messages[start:], start=start):
            if not text:
                continue
            out.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
        return out

    def to_chatbot_messages(self) -> list[dict[str, str]]:
        """Visible history in Gradio's ``type="messages"`` shape."""
        out = []
        for i, (_, text) in enumerate(self.messages[self.offset :]):
            if text is None:
                continue
            out.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
        return out

    def num_rounds(self) -> int:
        return (len(self.messages) - self.offset) // 2

    def copy(self) -> Conversation:
        return copy.deepcopy(self)

    def fastchat_style(self) -> SeparatorStyle:
        """The style FastChat clients render with: a chat template's equivalent, else
        ADD_COLON_SINGLE (with the roles ``user``/``assistant``, an approximation)."""
        if self.sep_style != SeparatorStyle.CHAT_TEMPLATE:
            return self.sep_style
        return self.wire_style or SeparatorStyle.ADD_COLON_SINGLE

    def _wire_frame(self) -> tuple[str, tuple[str, str], str]:
        """(system_template, roles, sep) as FastChat clients must render them: a chat template's
        are its FastChat equivalent's (ours stay ``user``/``assistant`` for display)."""
        if self.sep_style != SeparatorStyle.CHAT_TEMPLATE:
            return self.system_template, self.roles, self.sep
        found = fastchat_equivalent(self.chat_template or "", self.special_tokens)
        if found is None:
            return "{system_message}", self.roles, "\n"
        return found[0].system_template, found[0].roles, found[0].sep

    def dict(self) -> dict[str, Any]:
        """FastChat 0.2.36's ``/worker_get_conv_template`` ``conv`` object, plus ``chat_template``
        and ``special_tokens`` (FastChat ignores them; our clients render the Jinja template)."""
        system_template, roles, sep = self._wire_frame()
        return {
            "name": self.name,
            "system_template": system_template,
            "system_message": self.system,
            "roles": list(roles),
            "messages": [[roles[i % 2], text] for i, (_, text) in enumerate(self.messages)],
            "offset": self.offset,
            "sep_style": fastchat_styles.style_number(self.fastchat_style().value),
            "sep": sep,
            "sep2": self.sep2,
            "stop_str": self.stop_str,
            "stop_token_ids": list(self.stop_token_ids),
            "chat_template": self.chat_template,
            "special_tokens": dict(self.special_tokens),
            "fastchat_exact": self.fastchat_exact,
        }

    def log_dict(self) -> dict[str, Any]:
        """The seed's ``Conversation.dict()``, as its chat logs record a conversation."""
        return {
            "template_name": self.name,
            "system": self.system,
            "roles": list(self.roles),
            "messages": [list(m) for m in self.messages],
            "offset": self.offset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        """Read a ``conv`` object: FastChat's (``sep_style`` an integer, as FastChat workers and
        ours answer) or the older shape of ours (``template_name``, ``system``, a style name).

        Raises ValueError, KeyError or TypeError for anything else."""
        if "template_name" in data and "name" not in data:
            return _from_legacy_dict(data)
        style = SeparatorStyle(fastchat_styles.style_name(data["sep_style"]))
        source = data.get("chat_template")
        # FastChat reads only the first two roles (llama2-chinese lists a third).
        roles = tuple(data["roles"])[:2]
        if len(roles) != 2 or not all(isinstance(r, str) for r in roles):
            raise ValueError(f"roles must be at least two strings, not {data['roles']!r}")
        if source:  # rendered from the Jinja source: the FastChat frame is for FastChat only
            roles, data = ("user", "assistant"), {**data, "system_template": None, "sep": ""}
        return cls(
            name=str(data["name"]),
            system=str(data.get("system_message") or ""),
            system_template=_text(data, "system_template", "{system_message}"),
            roles=roles,  # type: ignore[arg-type]
            messages=[[str(role), text] for role, text in data.get("messages") or []],
            offset=int(data.get("offset") or 0),
            sep_style=SeparatorStyle.CHAT_TEMPLATE if source else style,
            sep=_text(data, "sep", "\n"),
            sep2=data.get("sep2"),
            stop_str=data.get("stop_str"),
            stop_token_ids=[int(t) for t in data.get("stop_token_ids") or []],
            chat_template=source or None,
            special_tokens=dict(data.get("special_tokens") or {}),
            wire_style=style if source else None,
            fastchat_exact=bool(data.get("fastchat_exact", True)),
        )


def _text(data: dict[str, Any], key: str, default: str) -> str:
    """A string field; absent or null gives FastChat's default ("" is kept: yuan's template)."""
    value = data.get(key)
    return default if value is None else str(value)


def _from_legacy_dict(data: dict[str, Any]) -> Conversation:
    """The shape our workers answered before they spoke FastChat's."""
    return Conversation(
        name=data["template_name"],
        system=data.get("system", ""),
        roles=tuple(data.get("roles", ("USER", "ASSISTANT"))),  # type: ignore[arg-type]
        messages=[list(m) for m in data.get("messages", [])],
        offset=data.get("offset", 0),
        sep_style=SeparatorStyle(data.get("sep_style", SeparatorStyle.ADD_COLON_SINGLE)),
        sep=data.get("sep", "\n"),
        sep2=data.get("sep2"),
        stop_str=data.get("stop_str"),
        stop_token_ids=list(data.get("stop_token_ids") or []),
        chat_template=data.get("chat_template"),
        special_tokens=dict(data.get("special_tokens") or {}),
    )


@lru_cache(maxsize=32)
def _compile_chat_template(source: str):
    # Same environment transformers uses for tokenizer chat templates, so prompts match exactly.
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def render_chat_template(
    source: str, messages: list[dict[str, str]], add_generation_prompt: bool, **special_tokens: str
) -> str:
    """Render a Hugging Face chat template (Jinja) without needing a tokenizer."""
    template = _compile_chat_template(source)
    return template.render(
        messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens
    )


_REGISTRY: dict[str, Conversation] = {}


def register_conv_template(template: Conversation, override: bool = False) -> None:
    if template.name in _REGISTRY and not override:
        raise ValueError(f"conversation template {template.name!r} is already registered")
    _REGISTRY[template.name] = template


def get_conv_template(name: str) -> Conversation:
    """A fresh copy of a registered template."""
    try:
        return _REGISTRY[name].copy()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown conversation template {name!r}; known: {known}") from None


def registered_templates() -> list[str]:
    return sorted(_REGISTRY)


def chat_template_conversation(
    source: str, special_tokens: dict[str, str], stop_token_ids: list[int], name: str = "hf"
) -> Conversation:
    """A conversation that renders with a tokenizer's own chat template.

    When a FastChat style renders the same prompts (ChatML templates such as SmolLM2's), it is
    named after it, with the template's default system message, and ``dict()`` gives that style's
    fields: FastChat clients, which see only the fields, then build the prompt our clients build
    from the source.
    """
    conv = Conversation(
        name=name,
        system="",
        roles=("user", "assistant"),
        sep_style=SeparatorStyle.CHAT_TEMPLATE,
        fastchat_exact=False,
        sep="",
        stop_token_ids=list(stop_token_ids),
        chat_template=source,
        special_tokens=dict(special_tokens),
    )
    found = fastchat_equivalent(source, special_tokens)
    if found is not None:
        equivalent, conv.fastchat_exact = found
        conv.name = equivalent.name
        conv.system = equivalent.system
        conv.wire_style = equivalent.sep_style
    return conv


def _chatml_candidate(source: str, special_tokens: dict[str, str]) -> Conversation:
    """FastChat's CHATML style with the template's default system message, if it adds one."""
    candidate = Conversation(
        name="chatml",
        system_template="<|im_start|>system\n{system_message}",
        roles=("<|im_start|>user", "<|im_start|>assistant"),
        sep_style=SeparatorStyle.CHATML,
        sep="<|im_end|>",
    )
    alone = render_chat_template(
        source, [{"role": "user", "content": "Hi"}], True, **special_tokens
    )
    head = "<|im_start|>system\n"
    end = alone.find(candidate.sep)
    if alone.startswith(head) and end > 0:
        candidate.system = alone[len(head) : end]
    return candidate


# (system message or None for the template's default, turns): the conversations a FastChat
# equivalent must render exactly as the chat template does.
_PROBES: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    ("Be brief.", ("Hi",)),
    ("Answer in French.", ("Hello!\nHow are you?", "Bien.", "Merci")),
    (None, ("Hi",)),
    (None, ("What is 2+2?", "4.", "And 3+3?")),
)


def _probe_matches(
    candidate: Conversation, source: str, special_tokens: dict[str, str], probe: tuple
) -> bool:
    system, turns = probe
    conv = candidate.copy()
    conv.system = candidate.system if system is None else system
    for i, text in enumerate(turns):
        conv.append_message(conv.roles[i % 2], text)
    conv.append_message(conv.roles[1], None)
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages += [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text}
        for i, text in enumerate(turns)
    ]
    return conv.get_prompt() == render_chat_template(source, messages, True, **special_tokens)


@lru_cache(maxsize=32)
def _fastchat_equivalent(
    source: str, tokens: tuple[tuple[str, str], ...]
) -> tuple[Conversation, bool] | None:
    from jinja2.exceptions import TemplateError

    special_tokens = dict(tokens)
    try:
        candidate = _chatml_candidate(source, special_tokens)
        matches = [_probe_matches(candidate, source, special_tokens, p) for p in _PROBES]
    except (TemplateError, TypeError, ValueError):
        return None
    if not all(matches[:2]):
        return None
    return candidate, all(matches)


def fastchat_equivalent(
    source: str, special_tokens: dict[str, str]
) -> tuple[Conversation, bool] | None:
    """The FastChat-style conversation (CHATML) closest to this chat template, and whether it
    renders every probe exactly; None when not even conversations with a system message match.

    Not exact: a ChatML template without a default system message. FastChat's CHATML style
    always frames a system block, so FastChat clients send an empty one when the chat has none.
    """
    found = _fastchat_equivalent(source, tuple(sorted(special_tokens.items())))
    return (found[0].copy(), found[1]) if found is not None else None


def default_template_name(model_name_or_path: str, has_chat_template: bool) -> str:
    """Which template a model gets when none is configured.

    CAMEL models were trained on vicuna_v1.1 (the original served them with one_shot, a defect);
    Vicuna v0 checkpoints use one_shot; other models use their tokenizer's chat template if any.
    Returns ``"chat_template"`` for the tokenizer's own template.
    """
    lowered = model_name_or_path.lower().rstrip("/")
    last = lowered.rsplit("/", 1)[-1]
    if "camel" in lowered:
        return "vicuna_v1.1"
    if "vicuna" in lowered:
        return "one_shot" if "v0" in last else "vicuna_v1.1"
    if has_chat_template:
        return "chat_template"
    return "one_shot"


register_conv_template(
    Conversation(
        name="vicuna_v1.1",
        system=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
        roles=("USER", "ASSISTANT"),
        sep_style=SeparatorStyle.ADD_COLON_TWO,
        sep=" ",
        sep2="</s>",
    )
)

_ONE_SHOT_REPLY = """Of course! Here are some creative ideas for a 10-year-old's birthday party:
1. Treasure Hunt: Organize a treasure hunt in your backyard or nearby park. Create clues and riddles for the kids to solve, leading them to hidden treasures and surprises.
2. Science Party: Plan a science-themed party where kids can engage in fun and interactive experiments. You can set up different stations with activities like making slime, erupting volcanoes, or creating simple chemical reactions.
3. Outdoor Movie Night: Set up a backyard movie night with a projector and a large screen or white sheet. Create a cozy seating area with blankets and pillows, and serve popcorn and snacks while the kids enjoy a favorite movie under the stars.
4. DIY Crafts Party: Arrange a craft party where kids can unleash their creativity. Provide a variety of craft supplies like beads, paints, and fabrics, and let them create their own unique masterpieces to take home as party favors.
5. Sports Olympics: Host a mini Olympics event with various sports and games. Set up different stations for activities like sack races, relay races, basketball shooting, and obstacle courses. Give out medals or certificates to the participants.
6. Cooking Party: Have a cooking-themed party where the kids can prepare their own mini pizzas, cupcakes, or cookies. Provide toppings, frosting, and decorating supplies, and let them get hands-on in the kitchen.
7. Superhero Training Camp: Create a superhero-themed party where the kids can engage in fun training activities. Set up an obstacle course, have them design their own superhero capes or masks, and organize superhero-themed games and challenges.
8. Outdoor Adventure: Plan an outdoor adventure party at a local park or nature reserve. Arrange activities like hiking, nature scavenger hunts, or a picnic with games. Encourage exploration and appreciation for the outdoors.
Remember to tailor the activities to the birthday child's interests and preferences. Have a great celebration!"""  # noqa: E501

register_conv_template(
    Conversation(
        name="one_shot",
        system=(
            "A chat between a curious human and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the human's questions."
        ),
        roles=("Human", "Assistant"),
        messages=[
            ["Human", "Got any creative ideas for a 10 year old’s birthday?"],
            ["Assistant", _ONE_SHOT_REPLY],
        ],
        offset=2,
        sep_style=SeparatorStyle.ADD_COLON_SINGLE,
        sep="\n### ",
        stop_str="###",
    )
)
