"""Text Generation Inference (TGI) wire format: request parameters, validation, responses.

Pure functions from TGI's request shape to our GenerateParams (validated as TGI's router does,
with its messages) and from our token events back to TGI's responses (``generated_text``,
``details`` with finish reason, token logprobs and seed), so that the ``text-generation`` client
and ``huggingface_hub.InferenceClient`` work against any camel-chat worker.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.schemas import MAX_SEED, GenerateParams

MAX_STOP_SEQUENCES = 4
MAX_BEST_OF = 1

TGIFinishReason = Literal["length", "eos_token", "stop_sequence"]


class TGIParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    best_of: int | None = None
    decoder_input_details: bool = False
    details: bool = False
    do_sample: bool = False
    frequency_penalty: float | None = None
    grammar: Any = None
    max_new_tokens: int | None = None
    repetition_penalty: float | None = None
    return_full_text: bool | None = None
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    temperature: float | None = None
    top_k: int | None = None
    top_n_tokens: int | None = None
    top_p: float | None = None
    truncate: int | None = None
    typical_p: float | None = None
    watermark: bool = False
    adapter_id: str | None = None


class TGIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: str
    # TGI turns sampling on when the whole ``parameters`` object is omitted.
    parameters: TGIParameters | None = None
    stream: bool = False


class TGIValidationError(ValueError):
    """Becomes 422 ``{"error": "Input validation error: ...", "error_type": "validation"}``."""


def parse_request(body: Any) -> TGIRequest:
    try:
        return TGIRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise TGIValidationError(f"`{field}`: {first['msg']}") from None


# Range rules on TGI's parameters, checked in this order (the first broken one is reported).
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("temperature", lambda v: v > 0, "must be strictly positive"),
    ("top_p", lambda v: 0 < v < 1, "must be > 0.0 and < 1.0"),
    ("top_k", lambda v: v > 0, "must be strictly positive"),
    ("repetition_penalty", lambda v: v > 0, "must be strictly positive"),
    ("typical_p", lambda v: 0 < v < 1, "must be > 0.0 and < 1.0"),
    ("truncate", lambda v: v > 0, "must be strictly positive"),
    ("seed", lambda v: 0 <= v <= MAX_SEED, f"must be >= 0 and <= {MAX_SEED}"),
)


def check_parameters(p: TGIParameters, stream: bool) -> None:
    """Refuse what TGI's router refuses, and the options this server does not implement."""
    if p.best_of is not None and p.best_of != MAX_BEST_OF:
        if stream:
            raise TGIValidationError("`best_of` != 1 is not supported when streaming tokens")
        raise TGIValidationError(f"`best_of` must be > 0 and <= {MAX_BEST_OF}. Given: {p.best_of}")
    for name, allowed, rule in _RANGES:
        value = getattr(p, name)
        if value is not None and not allowed(value):
            raise TGIValidationError(f"`{name}` {rule}")
    if len(p.stop) > MAX_STOP_SEQUENCES:
        raise TGIValidationError(
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(p.stop)}"
        )
    if stream and p.decoder_input_details:
        raise TGIValidationError("`decoder_input_details` == true is not supported when streaming")
    unsupported = {
        "frequency_penalty": p.frequency_penalty not in (None, 0, 0.0),
        "typical_p": p.typical_p is not None,
        "top_n_tokens": bool(p.top_n_tokens),
        "watermark": p.watermark,
        "grammar": p.grammar is not None,
        "adapter_id": p.adapter_id is not None,
    }
    if named := [name for name, used in unsupported.items() if used]:
        raise TGIValidationError(f"`{named[0]}` is not supported by this server")


def new_tokens_budget(p: TGIParameters, input_tokens: int, context_len: int) -> int:
    """``max_new_tokens`` as asked (null: what the context leaves), if inputs and it fit."""
    used_inputs = min(input_tokens, p.truncate) if p.truncate else input_tokens
    room = context_len - used_inputs
    max_new_tokens = p.max_new_tokens if p.max_new_tokens is not None else room
    if max_new_tokens <= 0:
        raise TGIValidationError("`max_new_tokens` must be strictly positive")
    if used_inputs + max_new_tokens > context_len:
        raise TGIValidationError(
            f"`inputs` tokens + `max_new_tokens` must be <= {context_len}. Given: "
            f"{used_inputs} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
        )
    return max_new_tokens


def to_generate_params(
    request: TGIRequest, input_tokens: int, context_len: int, stream: bool
) -> GenerateParams:
    """Validate as TGI's router does and map onto our parameters."""
    p = request.parameters or TGIParameters(do_sample=True)
    if not request.inputs:
        raise TGIValidationError("`inputs` cannot be empty")
    check_parameters(p, stream)
    max_new_tokens = new_tokens_budget(p, input_tokens, context_len)
    sampling = p.do_sample or any(
        v is not None for v in (p.temperature, p.top_k, p.top_p, p.typical_p)
    )
    seed = p.seed
    if sampling and seed is None:
        seed = random.randrange(MAX_SEED + 1)  # reported back in ``details.seed``, as TGI does
    fields = dict(
        prompt=request.inputs,
        temperature=(p.temperature if p.temperature is not None else 1.0) if sampling else 0.0,
        top_p=p.top_p if (sampling and p.top_p is not None) else 1.0,
        top_k=p.top_k if (sampling and p.top_k is not None) else -1,
        repetition_penalty=p.repetition_penalty or 1.0,
        max_new_tokens=max_new_tokens,
        stop=list(p.stop) or None,
        echo=bool(p.return_full_text),
        seed=seed,
        truncate=p.truncate,
    )
    try:
        return GenerateParams(**fields)
    except ValidationError as exc:  # a value TGI allows but this server cannot serve
        first = exc.errors()[0]
        raise TGIValidationError(f"`{first['loc'][0]}`: {first['msg']}") from None


def token_of(event: dict[str, Any]) -> dict[str, Any]:
    token = event["token"]
    return {
        "id": token["id"],
        "text": token["text"],
        "logprob": token["logprob"],
        "special": token["special"],
    }


def _final_details(event: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """What the last event of a generation says about it, in both response shapes."""
    return {
        "finish_reason": event.get("stop_kind", "length"),
        "generated_tokens": event["usage"]["completion_tokens"],
        "seed": seed,
    }


def details_of(
    events: list[dict[str, Any]],
    seed: int | None,
    prefill: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        **_final_details(events[-1], seed),
        "prefill": prefill,
        "tokens": [token_of(e) for e in events],
    }


def generate_response(
    events: list[dict[str, Any]],
    want_details: bool,
    seed: int | None,
    prefill: list[dict[str, Any]],
) -> dict[str, Any]:
    response: dict[str, Any] = {"generated_text": events[-1]["text"]}
    if want_details:
        response["details"] = details_of(events, seed, prefill)
    return response


def stream_event(
    event: dict[str, Any], index: int, final: bool, want_details: bool, seed: int | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "token": token_of(event),
        "generated_text": event["text"] if final else None,
        "details": None,
    }
    if final and want_details:
        out["details"] = {
            **_final_details(event, seed),
            "input_length": event["usage"]["prompt_tokens"],
        }
    return out


def error_body(message: str, error_type: str) -> dict[str, str]:
    return {"error": message, "error_type": error_type}
