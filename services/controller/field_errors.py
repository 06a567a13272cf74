"""Bad request fields, named the way a caller writes them: ``hyperparameters.n_epochs``,
``messages[0].content``, ``sources[1]``.

Pure logic, no HTTP: the routers turn ``InvalidFields`` into the API's error response (OpenAI's
shape under /v1, with the field in ``param`` and leading the message).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Problem = tuple[str, str]
M = TypeVar("M", bound=BaseModel)

# Pydantic names union branches in error locations ("str", "list[str]"); they are not fields.
_BRANCH_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidFields(Exception):
    """A request that cannot be served as sent; ``problems`` are (field, what is wrong)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(describe(self.problems))

    @property
    def param(self) -> str:
        return self.problems[0][0]


def describe(problems: Sequence[Problem]) -> str:
    """``"a: what; b: what"``: each field leads its own message."""
    return "; ".join(f"{field}: {text}" for field, text in problems)


def raise_if(problems: Sequence[Problem]) -> None:
    if problems:
        raise InvalidFields(problems)


def param_path(loc: Sequence[Any]) -> str | None:
    """``("messages", 0, "content", "str")`` -> ``"messages[0].content"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _IDENTIFIER.match(part) and part not in _BRANCH_TAGS:
            out += f".{part}" if out else part
        else:
            break
    return out or None


def _named_in(message: str, given: Any) -> tuple[str | None, str]:
    """A whole-model check names its field first ("num_fewshot names tasks ..."): that field,
    when it is one the caller sent, and the rest of the message."""
    first, _, rest = message.partition(" ")
    field = first.rstrip(":")
    if isinstance(given, Mapping) and field.split(".", 1)[0] in given and rest:
        return field, rest
    return None, message


def field_messages(errors: Iterable[Mapping[str, Any]]) -> dict[str | None, list[str]]:
    """Pydantic errors grouped by field path (None: the body as a whole), each message once."""
    by_param: dict[str | None, list[str]] = {}
    for err in errors:
        message = str(err["msg"]).removeprefix("Value error, ")
        loc = tuple(err.get("loc", ()))
        param = param_path(loc)
        if not loc:
            param, message = _named_in(message, err.get("input"))
        messages = by_param.setdefault(param, [])
        if message not in messages:
            messages.append(message)
    return by_param


def problems_of(errors: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Pydantic errors as (field, message); a union's failed branches are joined with "or"."""
    errors = list(errors)
    problems: list[Problem] = []
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", err["msg"])
            return [("body", f"malformed JSON ({detail})")]
    for param, messages in field_messages(errors).items():
        problems.append((param or "body", " or ".join(messages)))
    return problems


def validated(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or ``InvalidFields`` naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidFields(problems_of(exc.errors())) from None
