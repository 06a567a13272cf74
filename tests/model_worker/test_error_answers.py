"""The engine's refusals as each protocol answers them: status, body, headers, error codes."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse

from services.model_worker.app import fastchat_error
from services.model_worker.errors import ContextOverflow, EngineOverloaded, InvalidRequest
from services.model_worker.tgi_api import tgi_error


def body(response: JSONResponse) -> object:
    return json.loads(bytes(response.body))


def test_overloaded_is_a_429_with_retry_after_in_both_protocols() -> None:
    refusal = EngineOverloaded(running=1, waiting=2, limit=2, retry_after=1)
    assert refusal.message == (
        "The worker is overloaded: 1 requests running and 2 waiting (limit 2). Retry after 1 s."
    )

    fastchat = fastchat_error(refusal)
    assert fastchat.status_code == 429
    assert fastchat.headers["retry-after"] == "1"
    assert body(fastchat) == {"text": refusal.message, "error_code": 42903, "param": None}

    tgi = tgi_error(refusal)
    assert tgi.status_code == 429
    assert tgi.headers["retry-after"] == "1"
    assert body(tgi) == {"error": "Model is overloaded", "error_type": "overloaded"}


def test_a_bad_parameter_is_a_400_naming_it_or_a_tgi_validation_error() -> None:
    refusal = InvalidRequest("prompt", "must not be empty")
    fastchat = fastchat_error(refusal)
    assert fastchat.status_code == 400
    assert "retry-after" not in fastchat.headers
    assert body(fastchat) == {
        "text": "prompt: must not be empty",
        "error_code": 40001,
        "param": "prompt",
    }

    tgi = tgi_error(refusal)
    assert tgi.status_code == 422
    assert body(tgi) == {
        "error": "Input validation error: prompt: must not be empty",
        "error_type": "validation",
    }


def test_context_overflow_names_max_new_tokens_and_is_out_of_range() -> None:
    refusal = ContextOverflow(max_new_tokens=300, context_len=256)
    assert isinstance(refusal, InvalidRequest)
    assert (refusal.max_new_tokens, refusal.context_len) == (300, 256)
    assert body(fastchat_error(refusal)) == {
        "text": "max_new_tokens: 300 leaves no room for the prompt in the model's context of "
        "256 tokens",
        "error_code": 40302,
        "param": "max_new_tokens",
    }
