"""``POST /v1/embeddings``: OpenAI's embeddings API over FastChat's ``/worker_get_embeddings``.

``input`` is a string, a list of strings, a list of token ids or a list of such lists (OpenAI's
four forms); every form goes to one worker of ``model`` as a list (the worker embeds token ids
as they are). ``encoding_format: base64`` is the little-endian float32 array, base64-encoded, that
the official SDKs ask for by default and decode. ``dimensions`` is refused: the models served
here are not trained to be truncated.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.schemas import MAX_EMBEDDING_INPUTS

MAX_TOKEN_ID = 2**31 - 1


def _check_item(item: Any, where: str) -> str | list[int]:
    if isinstance(item, str):
        if not item:
            raise ValueError(f"{where} must not be an empty string")
        return item
    if isinstance(item, list):
        if not item:
            raise ValueError(f"{where} must not be an empty list of token ids")
        if not all(type(t) is int and 0 <= t <= MAX_TOKEN_ID for t in item):
            raise ValueError(f"{where} must be a string or a list of token ids (integers >= 0)")
        return item
    raise ValueError(f"{where} must be a string or a list of token ids")


def normalise_input(value: Any) -> list[str | list[int]]:
    """OpenAI's four forms of ``input`` as a list of items (a string or token ids each)."""
    if isinstance(value, str):
        return [_check_item(value, "input")]
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty string, list of strings, or list of token ids")
    if all(type(t) is int for t in value):
        return [_check_item(value, "input")]
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request, got {len(value)}")
    return [_check_item(item, f"input[{i}]") for i, item in enumerate(value)]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: list[str | list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> list[str | list[int]]:
        return normalise_input(value)

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("is not supported: these models' embeddings cannot be shortened")
        return value


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embedding_response(
    model: str, vectors: list[list[float]], token_num: int, encoding_format: str
) -> EmbeddingResponse:
    data = [
        Embedding(embedding=encode_vector(v, encoding_format), index=i)
        for i, v in enumerate(vectors)
    ]
    usage = EmbeddingUsage(prompt_tokens=token_num, total_tokens=token_num)
    return EmbeddingResponse(data=data, model=model, usage=usage)
