"""Why the engine refuses a request, in the engine's own terms.

The engine knows no protocol: each one turns these into its own answer. The FastChat routes
(``app.py``) answer 400 or 429 with ``{"text", "error_code", "param"}``; the TGI routes
(``tgi_api.py``) answer 422 or 429 with ``{"error", "error_type"}``. ``code`` is the FastChat
error code that goes with each refusal.
"""

from __future__ import annotations

from shared.constants import ErrorCode


class EngineError(Exception):
    """A request the engine will not run; ``message`` says why in plain words."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(EngineError):
    """A parameter this model cannot serve; ``param`` names it and starts the message."""

    def __init__(
        self, param: str, message: str, code: ErrorCode = ErrorCode.VALIDATION_TYPE_ERROR
    ) -> None:
        super().__init__(f"{param}: {message}", code)
        self.param = param


class ContextOverflow(InvalidRequest):
    """``max_new_tokens`` fills the model's whole context: no room is left for the prompt."""

    def __init__(self, max_new_tokens: int, context_len: int) -> None:
        super().__init__(
            "max_new_tokens",
            f"{max_new_tokens} leaves no room for the prompt in the model's context of "
            f"{context_len} tokens",
            ErrorCode.PARAM_OUT_OF_RANGE,
        )
        self.max_new_tokens = max_new_tokens
        self.context_len = context_len


class EngineOverloaded(EngineError):
    """The queue is full: the request is refused now rather than left waiting; the client may
    try again after ``retry_after`` seconds."""

    def __init__(self, running: int, waiting: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"The worker is overloaded: {running} requests running and {waiting} waiting "
            f"(limit {limit}). Retry after {retry_after} s.",
            ErrorCode.ENGINE_OVERLOADED,
        )
        self.running = running
        self.waiting = waiting
        self.limit = limit
        self.retry_after = retry_after
