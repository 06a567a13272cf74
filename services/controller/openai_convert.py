"""Pure conversions between OpenAI requests/responses and the FastChat worker protocol.

No I/O here, so every rule (prompt rendering, parameter mapping, deltas, chunk shapes) is tested
directly without processes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError
from pydantic_core import to_json

from services.controller.openai_errors import OpenAIError
from services.controller.openai_protocol import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatMessage,
    Completion,
    CompletionChoice,
    DeltaMessage,
    ErrorResponse,
    FinishReason,
    SamplingRequest,
    Usage,
)
from shared.conversation import Conversation
from shared.schemas import GenerateParams

log = logging.getLogger(__name__)

SSE_DONE = b"data: [DONE]\n\n"
_SEED_RANGE = 2**63


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def message_text(message: ChatMessage, index: int) -> str:
    """The text of a message; content parts other than text are refused, not dropped."""
    content = message.content
    if content is None:
        raise OpenAIError(
            400, "content must be a string or a list of text parts", param=f"messages[{index}]"
        )
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise OpenAIError(
                400,
                f"only text content parts are supported (got type {part.get('type')!r})",
                param=f"messages[{index}].content[{j}]",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def render_chat_prompt(template: Conversation, messages: list[ChatMessage]) -> str:
    """Render OpenAI messages with the worker's conversation template.

    System (and developer) messages replace the template's system prompt, joined in order.
    Consecutive messages of one role are merged, since templates need strict alternation; the
    turns must start and end with the user, and an open assistant slot is appended.
    """
    conv = template.copy()
    system: list[str] = []
    turns: list[list[str]] = []
    for i, message in enumerate(messages):
        text = message_text(message, i)
        if message.role in ("system", "developer"):
            system.append(text)
            continue
        if message.role not in ("user", "assistant"):
            raise OpenAIError(
                400,
                f"role '{message.role}' is not supported (no tool calling); use system, user "
                "or assistant",
                param=f"messages[{i}].role",
            )
        if not text.strip():
            raise OpenAIError(400, "content must not be empty", param=f"messages[{i}].content")
        if turns and turns[-1][0] == message.role:
            turns[-1][1] += "\n\n" + text
        else:
            turns.append([message.role, text])
    if not turns or turns[0][0] != "user":
        raise OpenAIError(
            400, "the first message after system messages must be from the user", param="messages"
        )
    if turns[-1][0] != "user":
        raise OpenAIError(400, "the last message must be from the user", param="messages")
    if system:
        conv.system = "\n\n".join(system)
    for role, text in turns:
        conv.append_message(conv.roles[0] if role == "user" else conv.roles[1], text)
    conv.append_message(conv.roles[1], None)
    try:
        return conv.get_prompt()
    except TemplateError as exc:
        raise OpenAIError(
            400, f"the model's chat template refused: {exc}", param="messages"
        ) from None


def template_stops(template: Conversation) -> list[str]:
    stop = template.stop_str
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def presence_to_repetition(presence_penalty: float | None) -> float:
    """Approximate OpenAI's additive presence penalty with the workers' multiplicative one.

    Both only look at whether a token appeared (not how often). +2 -> 2.0, 0 -> 1.0, -2 -> 0.5.
    """
    p = presence_penalty or 0.0
    return 1.0 + p / 2 if p >= 0 else 1.0 / (1.0 - p / 2)


def generate_params(
    request: SamplingRequest,
    prompt: str,
    max_new_tokens: int,
    extra_stops: Sequence[str] = (),
    echo: bool = False,
) -> dict[str, Any]:
    """The ``/worker_generate_stream`` body for one prompt."""
    stops = list(dict.fromkeys([*extra_stops, *request.stop_list()]))
    # Sampling fields the request leaves out stay out: the worker applies the model's defaults
    # (its generation_config.json), else the neutral ones.
    sampling = {
        name: value
        for name, value in (
            ("temperature", request.temperature),
            ("top_p", request.top_p),
            ("top_k", request.top_k),
            ("repetition_penalty", _repetition(request)),
        )
        if value is not None
    }
    params = GenerateParams(
        model=request.model,
        prompt=prompt,
        **sampling,
        max_new_tokens=max_new_tokens,
        stop=stops or None,
        stop_token_ids=request.stop_token_ids or None,
        echo=echo,
        seed=None if request.seed is None else request.seed % _SEED_RANGE,
    )
    return params.model_dump(exclude_none=True, exclude_unset=True)


def _repetition(request: SamplingRequest) -> float | None:
    """repetition_penalty if given, else one from presence_penalty if given, else None."""
    if request.repetition_penalty is not None:
        return request.repetition_penalty
    if request.presence_penalty is None:
        return None
    return presence_to_repetition(request.presence_penalty)


class DeltaTracker:
    """Turns the worker's cumulative snapshots into deltas, never repeating or garbling text.

    A trailing U+FFFD is half of a multi-byte character; it is held back until the next snapshot
    completes it, or sent as is at the end.
    """

    def __init__(self) -> None:
        self.sent = ""

    def update(self, text: str, final: bool = False) -> str:
        visible = text if final else text.rstrip("\ufffd")
        if not visible.startswith(self.sent):
            if len(visible) <= len(self.sent):
                return ""
            # The worker rewrote text already sent; it cannot be taken back, so go on from the
            # same length rather than repeat it.
            log.warning("event=snapshot_diverged sent=%d now=%d", len(self.sent), len(visible))
        delta = visible[len(self.sent) :]
        self.sent = visible
        return delta


def usage_from(snapshot: dict[str, Any]) -> Usage:
    raw = snapshot.get("usage") or {}
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(raw.get("total_tokens") or prompt + completion),
    )


def finish_reason_of(snapshot: dict[str, Any]) -> FinishReason | None:
    reason = snapshot.get("finish_reason")
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def sse_event(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


def sse_error(error: OpenAIError) -> bytes:
    """In-stream error: the SDKs raise APIError for an event whose data has an ``error`` key."""
    body: ErrorResponse = error.body()
    return sse_event(body.model_dump_json())


@dataclass(frozen=True)
class ChunkWriter:
    """Builds the SSE events of one streamed response (chat or text completion).

    Content chunks are most of a stream, one per token, so each choice's is built once as a
    template around its text: the event is then the template's two halves around the text's
    JSON (pydantic's own encoder), the same bytes ``model_dump_json`` gives, without building
    three models per token.
    """

    id: str
    created: int
    model: str
    chat: bool
    include_usage: bool = False
    _templates: dict[int, tuple[bytes, bytes]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _encode(self, chunk: ChatCompletionChunk | Completion) -> bytes:
        exclude = None if self.include_usage else {"usage"}
        return sse_event(chunk.model_dump_json(exclude=exclude))

    def _chat(self, index: int, delta: DeltaMessage, reason: FinishReason | None) -> bytes:
        choice = ChatChunkChoice(index=index, delta=delta, finish_reason=reason)
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=[choice]
        )
        return self._encode(chunk)

    def _text(self, index: int, text: str, reason: FinishReason | None) -> bytes:
        choice = CompletionChoice(index=index, text=text, finish_reason=reason)
        return self._encode(
            Completion(id=self.id, created=self.created, model=self.model, choices=[choice])
        )

    def _model_content(self, index: int, text: str) -> bytes:
        if self.chat:
            return self._chat(index, DeltaMessage(content=text), None)
        return self._text(index, text, None)

    def _template(self, index: int) -> tuple[bytes, bytes]:
        """The content event of choice ``index`` split where its text goes."""
        if (template := self._templates.get(index)) is None:
            marker = to_json(f"camel-chat-text-{uuid.uuid4().hex}")
            event = self._model_content(index, marker[1:-1].decode())
            head, found, tail = event.rpartition(marker)
            if not found:  # pragma: no cover - the marker is plain ASCII, encoded as is
                raise AssertionError("content marker not found in the chunk")
            template = self._templates[index] = (head, tail)
        return template

    def start(self, index: int) -> bytes | None:
        """Chat streams open each choice with the assistant role and empty content."""
        if not self.chat:
            return None
        return self._chat(index, DeltaMessage(role="assistant", content=""), None)

    def content(self, index: int, text: str) -> bytes:
        head, tail = self._template(index)
        return head + to_json(text) + tail

    def finish(self, index: int, reason: FinishReason) -> bytes:
        """The last chunk of a choice: empty delta (or text) and the finish reason."""
        if self.chat:
            return self._chat(index, DeltaMessage(), reason)
        return self._text(index, "", reason)

    def usage(self, usage: Usage) -> bytes:
        """The stream_options.include_usage chunk: no choices, the whole request's usage."""
        if self.chat:
            chunk: ChatCompletionChunk | Completion = ChatCompletionChunk(
                id=self.id, created=self.created, model=self.model, choices=[], usage=usage
            )
        else:
            chunk = Completion(
                id=self.id, created=self.created, model=self.model, choices=[], usage=usage
            )
        return sse_event(chunk.model_dump_json())
