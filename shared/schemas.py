"""Wire schemas of the FastChat worker protocol (controller <-> worker <-> clients).

Field names and defaults follow FastChat 0.2.36's controller and worker so its clients keep working;
validation is stricter so that bad input is answered with a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

FinishReason = Literal["stop", "length"]

# Largest seed a request may give: a signed 64-bit integer, what torch and numpy take.
MAX_SEED = 2**63 - 1


class WorkerStatus(BaseModel):
    model_names: list[str]
    speed: float = 1.0
    queue_length: int = 0


class RegisterWorkerRequest(BaseModel):
    worker_name: str = Field(description="Base URL of the worker, e.g. http://10.0.0.5:21002")
    check_heart_beat: bool = True
    worker_status: WorkerStatus | None = None
    multimodal: bool = False

    @field_validator("worker_name")
    @classmethod
    def _is_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class UnregisterWorkerRequest(BaseModel):
    worker_name: str


class HeartbeatRequest(BaseModel):
    worker_name: str
    queue_length: int = Field(0, ge=0)


class HeartbeatResponse(BaseModel):
    exist: bool


class ModelRequest(BaseModel):
    """Body of controller calls that only name a model."""

    model: str = Field(min_length=1)


class WorkerInfo(BaseModel):
    """A registered worker, as the controller's registry stores it."""

    name: str
    model_names: list[str]
    speed: float = 1.0
    queue_length: int = 0
    check_heart_beat: bool = True
    last_heart_beat: float = 0.0
    registered_at: float = 0.0
    multimodal: bool = False


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class GenerateParams(BaseModel):
    """Parameters of ``/worker_generate_stream`` and ``/worker_generate``."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: StrictStr
    temperature: float = Field(1.0, ge=0.0, le=100.0)
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    # -1 (or 0) switches top-k off.
    top_k: int = Field(-1, ge=-1)
    repetition_penalty: float = Field(1.0, gt=0.0)
    max_new_tokens: int = Field(256, ge=1)
    stop: StrictStr | list[StrictStr] | None = None
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = None
    echo: StrictBool = True
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    # Keep at most this many of the latest prompt tokens (TGI's ``truncate``).
    truncate: int | None = Field(None, ge=1)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else (value or [])
        if any(s == "" for s in items):
            raise ValueError("stop strings must not be empty")
        return value

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class StreamChunk(BaseModel):
    """One NUL-framed snapshot: the full text so far, never a delta."""

    text: str
    error_code: int = 0
    usage: Usage | None = None
    finish_reason: FinishReason | None = None


class CountTokenRequest(BaseModel):
    prompt: StrictStr


class ErrorBody(BaseModel):
    """Error answer of every HTTP endpoint: FastChat's ``text``/``error_code`` plus the field."""

    text: str
    error_code: int
    param: str | None = None


# A worker embeds at most this many inputs per request (OpenAI's own limit per call).
MAX_EMBEDDING_INPUTS = 2048
EmbeddingInput = (
    Annotated[StrictStr, Field(min_length=1)]
    | Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1)]
)


class EmbeddingsRequest(BaseModel):
    """``/worker_get_embeddings``: FastChat's ``{"input": [str, ...]}``; an item may also be a
    list of token ids (what OpenAI's API accepts)."""

    model: str = ""
    input: list[EmbeddingInput] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)


class EmbeddingsResponse(BaseModel):
    embedding: list[list[float]]
    token_num: int
