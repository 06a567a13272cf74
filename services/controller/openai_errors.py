"""Errors of the OpenAI-compatible API: OpenAI's body shape with real status codes.

FastChat answered every failure with HTTP 400, so the SDKs never retried an overloaded or
missing worker; here 429/5xx are retryable and 4xx are not, as OpenAI's clients expect.
"""

from __future__ import annotations

import json

from services.controller.field_errors import InvalidFields
from services.controller.openai_protocol import ErrorDetail, ErrorResponse
from shared.constants import ErrorCode

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
RATE_LIMIT = "rate_limit_error"


class OpenAIError(Exception):
    """Raised anywhere under /v1; one handler turns it into the response (or stream event)."""

    def __init__(
        self,
        status_code: int,
        message: str,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> ErrorResponse:
        return ErrorResponse(
            error=ErrorDetail(
                message=self.message, type=self.type, param=self.param, code=self.code
            )
        )


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{model}' does not exist or is not served here.",
        param="model",
        code="model_not_found",
    )


def model_unavailable(model: str) -> OpenAIError:
    return OpenAIError(
        503,
        f"No worker is serving model '{model}' right now; try again shortly.",
        SERVER_ERROR,
        param="model",
        code="model_unavailable",
    )


def worker_unreachable(exc: BaseException) -> OpenAIError:
    return OpenAIError(
        503,
        f"The worker for this model could not be reached ({type(exc).__name__}); try again.",
        SERVER_ERROR,
        code="worker_unavailable",
    )


def worker_timeout(exc: BaseException) -> OpenAIError:
    return OpenAIError(
        504, f"The worker timed out ({type(exc).__name__}).", SERVER_ERROR, code="worker_timeout"
    )


def worker_broken(detail: str) -> OpenAIError:
    return OpenAIError(502, f"The worker answered badly: {detail}", SERVER_ERROR, code="bad_worker")


def internal_error() -> OpenAIError:
    return OpenAIError(500, "Internal error in the controller.", SERVER_ERROR)


def context_overflow(context_len: int, prompt_tokens: int, param: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"This model's maximum context length is {context_len} tokens. However, your "
        f"{'messages' if param == 'messages' else 'prompt'} resulted in {prompt_tokens} tokens, "
        "leaving no room for a completion. Please reduce the length of the input.",
        param=param,
        code="context_length_exceeded",
    )


def from_invalid_fields(exc: InvalidFields, code: str | None = None) -> OpenAIError:
    """A 400 naming every bad field in the message and the first in ``param``."""
    return OpenAIError(400, str(exc), param=exc.param, code=code)


# Worker field names -> the request field the caller knows.
_WORKER_PARAMS = {"max_new_tokens": "max_tokens"}


def _status_for_code(error_code: int) -> int:
    if error_code // 100 == 429:
        return 429
    if 40000 <= error_code < 50000:
        return 400
    if error_code == ErrorCode.CONTROLLER_NO_WORKER:
        return 503
    if error_code == ErrorCode.CONTROLLER_WORKER_TIMEOUT:
        return 504
    return 500


def from_worker_code(message: str, error_code: int, param: str | None = None) -> OpenAIError:
    """A worker-protocol error (``text``/``error_code``) as an OpenAI error."""
    status = _status_for_code(error_code)
    if status == 400:
        code = "context_length_exceeded" if error_code == ErrorCode.CONTEXT_OVERFLOW else None
        return OpenAIError(400, message, param=_WORKER_PARAMS.get(param or "", param), code=code)
    if status == 429:
        code = "engine_overloaded" if error_code == ErrorCode.ENGINE_OVERLOADED else None
        return OpenAIError(429, message, RATE_LIMIT, code=code or "rate_limit_exceeded")
    return OpenAIError(status, message, SERVER_ERROR, code=str(error_code) if error_code else None)


def from_worker_response(
    status_code: int, content: bytes, headers: dict[str, str], prompt_param: str
) -> OpenAIError:
    """A non-200 answer of ``/worker_generate_stream``: keep 400/429/503 and Retry-After."""
    try:
        body = json.loads(content)
        message = str(body.get("text") or body.get("message") or body.get("detail") or "")
        error_code = int(body.get("error_code") or 0)
        param = body.get("param")
    except (ValueError, AttributeError, TypeError):
        message, error_code, param = content.decode(errors="replace")[:500], 0, None
    message = message or f"HTTP {status_code} from the worker"
    if param == "prompt":
        param = prompt_param
    retry = {k: v for k, v in headers.items() if k.lower() in ("retry-after", "retry-after-ms")}
    if status_code == 429:
        error = from_worker_code(message, error_code or ErrorCode.ENGINE_OVERLOADED)
        error.status_code = 429
    elif status_code in (400, 413, 422):
        error = from_worker_code(message, error_code or ErrorCode.VALIDATION_TYPE_ERROR, param)
        error.status_code = 400
    elif status_code == 503:
        error = OpenAIError(503, message, SERVER_ERROR, code="worker_unavailable")
    else:
        error = worker_broken(f"HTTP {status_code}: {message}")
    error.headers.update(retry)
    return error


def worth_another_worker(error: OpenAIError) -> bool:
    """A worker's failure before its first token that another worker may not have: it could
    not be reached (503), failed (500, 502) or is overloaded (429). A timeout (504) is not tried
    elsewhere (the worker is slow, and the client has waited already), nor is a bad request."""
    return error.status_code in (429, 500, 502, 503)
