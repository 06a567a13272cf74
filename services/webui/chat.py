"""Chat logic of the web page, free of Gradio so that tests and scripts can drive it directly.

A turn takes the user's text, asks the controller for a worker, renders the worker's own
conversation template and streams the reply. Refusals and failures are shown as a transient
assistant message that names the cause; they never enter the conversation (so they never reach
a later prompt), and the user's text goes back into the textbox so that it can be sent again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.webui.controller_client import ControllerClient, NoWorkerError, ServiceError
from shared.constants import (
    CONVERSATION_LEN_LIMIT,
    CONVERSATION_LIMIT_MSG,
    INPUT_CHAR_LEN_LIMIT,
    MODERATION_MSG,
)
from shared.conversation import Conversation

log = logging.getLogger(__name__)

# Shown after the partial reply while the model is still writing.
CURSOR = "▌"

# Longer messages are refused, not silently cut (the original cut them to 2560 characters).
INPUT_TOO_LONG_MSG = (
    "Your message is {length} characters long; messages are limited to {limit} characters. "
    "Shorten it and send it again."
)

NOTHING_TO_REGENERATE_MSG = "There is no reply to regenerate yet: send a message first."

NO_MODEL_MSG = (
    "No model is selected. No worker has registered with the controller yet, or the model list "
    "is out of date: reload the page once a worker is up."
)

ChatMessages = list[dict[str, str]]
# ``--moderate``: whether a message is flagged (services/webui/moderation.py).
Moderator = Callable[[str], bool]


@dataclass(frozen=True)
class GenerationParams:
    """The sampling controls the page offers (defaults match the sliders)."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512


@dataclass
class ChatState:
    """One browser session's conversation with one model.

    Plain data: Gradio deep-copies the initial value for every session.
    """

    model: str = ""
    conversation: Conversation | None = None
    # Identifies the conversation in logs; set when a conversation starts.
    conv_id: str = ""
    # The text of the last turn if it failed after being sent: Regenerate sends it again.
    failed_text: str | None = None
    # The last reply was voted on (or flagged): the vote buttons stay off until the next one.
    voted: bool = False

    def reset(self, model: str = "") -> None:
        """Forget the history; the next message starts a conversation with ``model``."""
        self.model = model
        self.conversation = None
        self.conv_id = ""
        self.failed_text = None
        self.voted = False

    def history(self) -> ChatMessages:
        """What the chatbot shows: the visible turns, in ``{"role", "content"}`` form."""
        return self.conversation.to_chatbot_messages() if self.conversation else []

    def rounds(self) -> int:
        return self.conversation.num_rounds() if self.conversation else 0

    def to_dict(self) -> dict[str, Any]:
        """The conversation as the chat log records it (the original's ``state.dict()``)."""
        conv = self.conversation.log_dict() if self.conversation else {}
        return {**conv, "conv_id": self.conv_id, "model_name": self.model}


@dataclass(frozen=True)
class Buttons:
    """Which of the chat's buttons can be pressed (Upvote/Downvote/Flag share ``vote``)."""

    vote: bool = False
    regenerate: bool = False
    clear: bool = False


def buttons_for(state: ChatState, busy: bool = False) -> Buttons:
    """All off while a reply streams; votes only for a fresh reply; Regenerate and Clear whenever
    there is something to redo or forget."""
    if busy:
        return Buttons()
    rounds = state.rounds()
    failed = state.failed_text is not None
    return Buttons(
        vote=rounds > 0 and not failed and not state.voted,
        regenerate=rounds > 0 or failed,
        clear=rounds > 0 or failed,
    )


@dataclass(frozen=True)
class TurnUpdate:
    """One step of a turn, to be shown: the chatbot's messages and the textbox's content."""

    history: ChatMessages
    textbox: str
    # Set on the final update of a refused or failed turn.
    error: str | None = None
    # The stored reply, set on the final update of a successful turn.
    reply: str | None = None
    # False while the reply is still streaming.
    done: bool = True
    # Wall-clock (epoch seconds) start and finish of a successful turn, for the chat log.
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class _Turn:
    """Bookkeeping of the turn in progress, for the failure message."""

    text: str
    shown: ChatMessages = field(default_factory=list)
    partial: str = ""


def choose_model(models: Sequence[str], requested: str | None, current: str | None = None) -> str:
    """The model to preselect: the one asked for in the URL, else the current one, else the first.

    Names not in ``models`` are ignored so that a stale link cannot select a model nobody serves.
    """
    for candidate in (requested, current):
        if candidate and candidate in models:
            return candidate
    return models[0] if models else ""


def error_message(partial: str, message: str) -> str:
    """The assistant bubble of a failed turn: what arrived before the failure, then the cause."""
    notice = f"⚠️ {message}"
    return f"{partial}\n\n{notice}" if partial else notice


def run_turn(
    state: ChatState,
    client: ControllerClient,
    model: str,
    text: str,
    params: GenerationParams | None = None,
    moderator: Moderator | None = None,
) -> Iterator[TurnUpdate]:
    """Send ``text`` to ``model`` and stream the answer; always yields at least one update.

    ``state`` is updated in place: a new model starts a new conversation, and a successful turn
    stores the user's text and the stripped reply. A text ``moderator`` flags is not sent: the
    textbox shows FastChat's moderation message instead.
    """
    params = params or GenerationParams()
    if not text or not text.strip():
        yield TurnUpdate(state.history(), text)
        return
    if model != state.model:
        state.reset(model)
    if not model:
        yield _refuse(state, text, NO_MODEL_MSG)
        return
    if len(text) > INPUT_CHAR_LEN_LIMIT:
        message = INPUT_TOO_LONG_MSG.format(length=len(text), limit=INPUT_CHAR_LEN_LIMIT)
        yield _refuse(state, text, message)
        return
    conv = state.conversation
    if conv is not None and conv.num_rounds() >= CONVERSATION_LEN_LIMIT:
        yield _refuse(state, text, CONVERSATION_LIMIT_MSG)
        return
    if moderator is not None and moderator(text):
        log.info("event=chat_moderated conv_id=%s model=%s", state.conv_id, model)
        yield _refuse(state, MODERATION_MSG, MODERATION_MSG)
        return

    turn = _Turn(text=text)
    state.failed_text = None
    try:
        worker = client.worker_address(model)
        if not worker:
            raise NoWorkerError(model)
        if conv is None:
            conv = state.conversation = client.conversation_template(worker, model)
            state.conv_id = uuid.uuid4().hex
        yield from _stream(state, conv, client, worker, turn, params)
    except ServiceError as exc:
        log.warning(
            "event=chat_failed conv_id=%s model=%s error=%s detail=%r",
            state.conv_id,
            model,
            type(exc).__name__,
            str(exc),
        )
        yield _fail(state, turn, str(exc))
    except Exception as exc:  # a bug here must still leave the user a readable message
        log.exception("event=chat_crashed conv_id=%s model=%s", state.conv_id, model)
        yield _fail(state, turn, f"The web UI failed unexpectedly ({exc!r}).")


def regenerate_turn(
    state: ChatState,
    client: ControllerClient,
    params: GenerationParams | None = None,
    moderator: Moderator | None = None,
) -> Iterator[TurnUpdate]:
    """Answer the last message again: the one that failed, else the last answered one (whose
    reply is dropped first; it passed moderation when it was sent)."""
    if state.failed_text is not None:
        yield from run_turn(state, client, state.model, state.failed_text, params, moderator)
        return
    conv = state.conversation
    if conv is None or conv.num_rounds() == 0:
        shown = [
            *state.history(),
            {"role": "assistant", "content": f"⚠️ {NOTHING_TO_REGENERATE_MSG}"},
        ]
        yield TurnUpdate(shown, "", error=NOTHING_TO_REGENERATE_MSG)
        return
    text = conv.messages[-2][1] or ""
    removed = conv.messages[-2:]
    del conv.messages[-2:]
    finished = False
    try:
        for update in run_turn(state, client, state.model, text, params):
            finished = update.done
            yield update
    finally:
        # Abandoned mid-stream: put the old round back rather than lose it.
        if not finished and state.conversation is conv and state.failed_text is None:
            conv.messages.extend(removed)


def _stream(
    state: ChatState,
    conv: Conversation,
    client: ControllerClient,
    worker: str,
    turn: _Turn,
    params: GenerationParams,
) -> Iterator[TurnUpdate]:
    before = state.history()
    conv.append_message(conv.roles[0], turn.text)
    conv.append_message(conv.roles[1], None)
    turn.shown = [*before, {"role": "user", "content": turn.text}]
    yield TurnUpdate([*turn.shown, {"role": "assistant", "content": CURSOR}], "", done=False)

    started_at = time.time()
    started = time.monotonic()
    finished = False
    try:
        for snapshot in client.stream_reply(
            worker,
            state.model,
            conv,
            temperature=params.temperature,
            top_p=params.top_p,
            max_new_tokens=params.max_new_tokens,
        ):
            turn.partial = snapshot.strip()
            shown = [*turn.shown, {"role": "assistant", "content": turn.partial + CURSOR}]
            yield TurnUpdate(shown, "", done=False)
        conv.update_last_message(turn.partial)
        finished = True
    finally:
        # Failed, or abandoned (the page went away): the half turn must not reach later prompts.
        if not finished:
            del conv.messages[-2:]
    log.info(
        "event=chat_turn conv_id=%s model=%s worker=%s rounds=%d reply_chars=%d seconds=%.2f",
        state.conv_id,
        state.model,
        worker,
        conv.num_rounds(),
        len(turn.partial),
        time.monotonic() - started,
    )
    state.voted = False
    yield TurnUpdate(
        state.history(),
        "",
        reply=turn.partial,
        started_at=started_at,
        finished_at=time.time(),
    )


def _refuse(state: ChatState, text: str, message: str) -> TurnUpdate:
    """Nothing was sent: ``text`` goes (back) into the textbox, and the chat says why."""
    shown = [*state.history(), {"role": "assistant", "content": f"⚠️ {message}"}]
    return TurnUpdate(shown, text, error=message)


def _fail(state: ChatState, turn: _Turn, message: str) -> TurnUpdate:
    """Show the unfinished turn (already out of the conversation) with the cause of the failure."""
    state.failed_text = turn.text
    shown = [*state.history(), {"role": "user", "content": turn.text}]
    shown.append({"role": "assistant", "content": error_message(turn.partial, message)})
    return TurnUpdate(shown, turn.text, error=message)
