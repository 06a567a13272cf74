"""FastChat 0.2.36's separator styles: their wire numbers and how each renders a prompt.

FastChat workers describe their conversation template by fields plus ``sep_style``, an integer
(``fastchat.conversation.SeparatorStyle``, an ``IntEnum`` numbered from 1 by ``auto()``), and
FastChat clients rebuild the prompt from those fields alone. Each renderer below is a port of one
branch of FastChat's ``Conversation.get_prompt`` (text messages only: FastChat's image tuples are
not part of this protocol), checked against FastChat's own code for every template it registers
(``tests/shared/test_fastchat_styles.py``). Like FastChat, an empty or ``None`` message is the open
slot the model fills.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# FastChat 0.2.36 order: the integer on the wire is the position here, from 1.
FASTCHAT_STYLES: tuple[str, ...] = (
    "add_colon_single",
    "add_colon_two",
    "add_colon_space_single",
    "no_colon_single",
    "no_colon_two",
    "add_new_line_single",
    "llama2",
    "chatglm",
    "chatml",
    "chatintern",
    "dolly",
    "rwkv",
    "phoenix",
    "robin",
    "falcon_chat",
    "chatglm3",
    "deepseek_chat",
    "metamath",
    "yuan2",
)


def style_number(style: str) -> int:
    """FastChat's integer for one of FASTCHAT_STYLES."""
    return FASTCHAT_STYLES.index(style) + 1


def style_name(number: int) -> str:
    """The style a FastChat integer stands for; ValueError for one FastChat 0.2.36 lacks."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise ValueError(f"sep_style must be an integer, not {number!r}")
    if not 1 <= number <= len(FASTCHAT_STYLES):
        raise ValueError(f"sep_style {number} is not one of FastChat's 1..{len(FASTCHAT_STYLES)}")
    return FASTCHAT_STYLES[number - 1]


@dataclass(frozen=True)
class Parts:
    """What a renderer needs of a conversation."""

    name: str
    system_template: str
    system_message: str
    roles: Sequence[str]
    messages: Sequence[Sequence[str | None]]
    sep: str
    sep2: str

    @property
    def system(self) -> str:
        return self.system_template.format(system_message=self.system_message)


def _colon(c: Parts, after_open: str, seps: Sequence[str], lead: bool = True) -> str:
    ret = c.system + seps[0] if lead else c.system
    for i, (role, message) in enumerate(c.messages):
        ret += f"{role}: {message}{seps[i % 2]}" if message else f"{role}{after_open}"
    return ret


def _add_colon_single(c: Parts) -> str:
    return _colon(c, ":", [c.sep, c.sep])


def _add_colon_two(c: Parts) -> str:
    return _colon(c, ":", [c.sep, c.sep2])


def _add_colon_space_single(c: Parts) -> str:
    return _colon(c, ": ", [c.sep, c.sep])


def _deepseek_chat(c: Parts) -> str:
    return _colon(c, ":", [c.sep, c.sep2], lead=False)


def _falcon_chat(c: Parts) -> str:
    ret = c.system + c.sep if c.system_message else ""
    for role, message in c.messages:
        ret += f"{role}: {message}{c.sep}" if message else f"{role}:"
    return ret


def _add_new_line_single(c: Parts) -> str:
    ret = "" if c.system == "" else c.system + c.sep
    for role, message in c.messages:
        ret += f"{role}\n{message}{c.sep}" if message else f"{role}\n"
    return ret


def _no_colon(c: Parts, seps: Sequence[str]) -> str:
    ret = c.system
    for i, (role, message) in enumerate(c.messages):
        ret += f"{role}{message}{seps[i % 2]}" if message else role
    return ret


def _no_colon_single(c: Parts) -> str:
    return _no_colon(c, [c.sep, c.sep])


def _no_colon_two(c: Parts) -> str:
    return _no_colon(c, [c.sep, c.sep2])


def _rwkv(c: Parts) -> str:
    ret = c.system
    for role, message in c.messages:
        if message:
            ret += role + ": " + message.replace("\r\n", "\n").replace("\n\n", "\n") + "\n\n"
        else:
            ret += role + ":"
    return ret


def _llama2(c: Parts) -> str:
    seps = [c.sep, c.sep2]
    ret = c.system if c.system_message else "[INST] "
    for i, (_, message) in enumerate(c.messages):
        tag = c.roles[i % 2]
        if message:
            ret += message + " " if i == 0 else f"{tag} {message}{seps[i % 2]}"
        else:
            ret += tag
    return ret


def _chatglm(c: Parts) -> str:
    round_add_n = 1 if c.name == "chatglm2" else 0
    ret = c.system + c.sep if c.system else ""
    for i, (role, message) in enumerate(c.messages):
        if i % 2 == 0:
            ret += f"[Round {i // 2 + round_add_n}]{c.sep}"
        ret += f"{role}：{message}{c.sep}" if message else f"{role}："
    return ret


def _chatml(c: Parts) -> str:
    ret = "" if c.system == "" else c.system + c.sep + "\n"
    for role, message in c.messages:
        ret += f"{role}\n{message}{c.sep}\n" if message else f"{role}\n"
    return ret


def _chatglm3(c: Parts) -> str:
    ret = c.system if c.system_message else ""
    for role, message in c.messages:
        ret += f"{role}\n{message}" if message else role
    return ret


def _chatintern(c: Parts) -> str:
    seps = [c.sep, c.sep2]
    ret = c.system
    for i, (role, message) in enumerate(c.messages):
        if i % 2 == 0:
            ret += "<s>"
        ret += f"{role}:{message}{seps[i % 2]}\n" if message else f"{role}:"
    return ret


def _dolly(c: Parts) -> str:
    seps = [c.sep, c.sep2]
    ret = c.system
    for i, (role, message) in enumerate(c.messages):
        if message:
            ret += f"{role}:\n{message}{seps[i % 2]}" + ("\n\n" if i % 2 == 1 else "")
        else:
            ret += f"{role}:\n"
    return ret


def _phoenix(c: Parts) -> str:
    ret = c.system
    for role, message in c.messages:
        ret += f"{role}: <s>{message}</s>" if message else f"{role}: <s>"
    return ret


def _robin(c: Parts) -> str:
    ret = c.system + c.sep
    for role, message in c.messages:
        ret += f"{role}:\n{message}{c.sep}" if message else f"{role}:\n"
    return ret


def _metamath(c: Parts) -> str:
    ret = "" if c.system == "" else c.system + c.sep
    for i, (role, message) in enumerate(c.messages):
        # sep2 prefixes the reply in this style.
        starting_sep = ":\n" if i % 2 == 0 else ": " + c.sep2
        ending_sep = c.sep if i % 2 == 0 else ""
        ret += role + starting_sep + (message + ending_sep if message else "")
    return ret


def _yuan2(c: Parts) -> str:
    ret = c.system + c.sep2 if c.system_message else ""
    for _, message in c.messages:
        ret += message + "<n>" if message else ""
    return ret.rstrip("<n>") + c.sep


RENDERERS: dict[str, Callable[[Parts], str]] = {
    "add_colon_single": _add_colon_single,
    "add_colon_two": _add_colon_two,
    "add_colon_space_single": _add_colon_space_single,
    "no_colon_single": _no_colon_single,
    "no_colon_two": _no_colon_two,
    "add_new_line_single": _add_new_line_single,
    "llama2": _llama2,
    "chatglm": _chatglm,
    "chatml": _chatml,
    "chatintern": _chatintern,
    "dolly": _dolly,
    "rwkv": _rwkv,
    "phoenix": _phoenix,
    "robin": _robin,
    "falcon_chat": _falcon_chat,
    "chatglm3": _chatglm3,
    "deepseek_chat": _deepseek_chat,
    "metamath": _metamath,
    "yuan2": _yuan2,
}


def render(style: str, parts: Parts) -> str:
    """The prompt FastChat 0.2.36 builds for ``parts`` in ``style`` (one of FASTCHAT_STYLES)."""
    return RENDERERS[style](parts)
