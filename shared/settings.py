"""All configuration, read from environment variables, with defaults that run locally.

Every service builds its CLI on top of these values (flags override the environment).
Names are grouped by prefix: ``REDIS_*``, ``CONTROLLER_*``, ``WORKER_*``, ``WEBUI_*``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


class _Section(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)


class CommonSettings(_Section):
    """Settings every service shares."""

    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")
    redis_key_prefix: str = Field("camelchat:", alias="REDIS_KEY_PREFIX")
    controller_address: str = Field("http://127.0.0.1:21001", alias="CONTROLLER_ADDRESS")
    log_dir: Path = Field(REPO_ROOT / "logs", alias="LOG_DIR")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    models_dir: Path = Field(REPO_ROOT / "models", alias="MODELS_DIR")
    # Where built datasets live (one folder per dataset id); shared by controller and ingestor.
    datasets_dir: Path = Field(REPO_ROOT / "datasets", alias="DATASETS_DIR")
    # Celery broker and result backend; empty: REDIS_URL.
    celery_broker_url: str = Field("", alias="CELERY_BROKER_URL")
    # Seconds before a job whose worker died is delivered again (jobs running longer are
    # protected from double execution by their lease).
    celery_visibility_timeout: float = Field(3600.0, alias="CELERY_VISIBILITY_TIMEOUT")
    # Where fine-tuning jobs write checkpoints and results (one folder per job id).
    jobs_dir: Path = Field(REPO_ROOT / "checkpoints", alias="JOBS_DIR")

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url


class ControllerSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="CONTROLLER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 21001
    dispatch_method: Literal["lottery", "shortest_queue"] = Field(
        "shortest_queue", description="how a request picks among the workers serving its model"
    )
    heart_beat_expiration: float = Field(
        6.0, description="seconds without a heartbeat after which a worker leaves routing"
    )
    worker_status_timeout: float = Field(
        5.0, description="timeout in seconds of the controller's status polls of a worker"
    )
    worker_api_timeout: float = Field(
        100.0,
        description="seconds to connect to a worker and to wait between chunks of a generation",
    )
    api_keys: str = Field(
        "",
        description="comma-separated Bearer keys required on the OpenAI-compatible /v1 routes; "
        "empty: open",
    )
    known_model_ttl: float = Field(
        86400.0,
        description="seconds a model name stays known after it was last served: a request for it "
        "while no worker serves it gets 503 (retry later) within that time and 404 after",
    )


class ClientSettings(_Section):
    """Command-line clients of the controller (``test_message``, ``register_worker``, the demo)."""

    controller_address: str = Field(
        CommonSettings.model_fields["controller_address"].default,
        description="base URL of the controller",
    )
    controller_api_key: str = Field(
        "",
        description="Bearer key sent to the controller (one of its CONTROLLER_API_KEYS, which "
        "guard its /v1 routes); empty: none",
    )


class WorkerSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 21002
    # The URL the controller and clients use to reach this worker; derived from host/port if empty.
    address: str = ""
    model_path: str = ""
    # Comma-separated names the model is served under; default: last component of model_path.
    model_names: str = ""
    conv_template: str = ""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    load_8bit: bool = False
    load_4bit: bool = False
    # batch: continuous batching; sequential: one request at a time per thread (the original's way).
    engine: Literal["batch", "sequential"] = "batch"
    # Requests decoded at once (FastChat's --limit-model-concurrency); more wait in the queue.
    limit_model_concurrency: int = 32
    # Waiting requests beyond this are refused with 429 and Retry-After.
    max_queue: int = 256
    # Prompt tokens prefilled per scheduler step, so long prompts do not stall running streams.
    prefill_chunk: int = 512
    stream_interval: int = 2
    heart_beat_interval: float = 2.0
    no_register: bool = False
    seed: int | None = None
    # local: the model runs here; tgi / openai: forward to an existing server at backend_url.
    backend: Literal["local", "tgi", "openai"] = "local"
    backend_url: str = ""
    backend_model: str = ""
    backend_api_key: str = ""
    # Remote backends: the tokenizer for templates and token counts (default: model_path).
    tokenizer_path: str = ""
    context_len: int = 4096


class PoolSettings(_Section):
    """The model pool: a supervisor that serves deployed models, one model worker each."""

    model_config = SettingsConfigDict(env_prefix="POOL_", extra="ignore")

    host: str = "127.0.0.1"
    # The pool's own HTTP port (health and what it runs).
    port: int = 21099
    # Ports handed to the model workers it starts, "first-last".
    port_range: str = "21100-21199"
    # Host name the controller and clients use to reach this pool's workers; empty: ``host``.
    advertise_host: str = ""
    # Most models served at once by this pool.
    max_models: int = 4
    # Name of this pool in deployment records; empty: hostname:pid.
    name: str = ""
    # Seconds between looks at the deployment records.
    poll_interval: float = 1.0
    # Seconds a model worker may take to load and answer before its deployment fails.
    load_timeout: float = 600.0
    # Extra flags for every model worker it starts (e.g. "--dtype bfloat16 --max-batch-size 16").
    worker_args: str = ""


class WebUISettings(_Section):
    model_config = SettingsConfigDict(env_prefix="WEBUI_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7860
    concurrency_count: int = 10
    model_list_mode: Literal["once", "reload"] = "reload"
    # How long the page waits on a worker between streamed chunks before giving up.
    worker_api_timeout: float = 100.0
    # Folder of the conversation log (<date>-conv.json); empty: LOG_DIR.
    conv_log_dir: str = ""
    # Bearer key for the controller's /v1 routes when CONTROLLER_API_KEYS guards them.
    api_key: str = ""
    # Seconds between refreshes of the training and models pages (and the chat's model list).
    refresh_seconds: float = 2.0
    # Base models offered by the fine-tuning form (comma-separated folders or Hub ids; any other
    # can be typed); empty: the embedded default model.
    base_models: str = ""


@lru_cache
def common_settings() -> CommonSettings:
    return CommonSettings()


@lru_cache
def controller_settings() -> ControllerSettings:
    return ControllerSettings()


@lru_cache
def worker_settings() -> WorkerSettings:
    return WorkerSettings()


@lru_cache
def webui_settings() -> WebUISettings:
    return WebUISettings()


def default_model_dir() -> Path:
    """Folder the embedded default model is converted into at set-up."""
    return common_settings().models_dir / DEFAULT_MODEL_NAME


class IngestorSettings(_Section):
    """Dataset ingestor defaults (``INGEST_*``); CLI flags and job specs override them."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    download_dir: Path = REPO_ROOT / "datasets"
    # Empty: the embedded default model's tokenizer (default_model_dir()).
    tokenizer_path: str = ""
    max_length: int = 2048
    keep_lang: str = "en"
    # Processes for conversion and filtering; empty: one per CPU core.
    workers: int | None = None
    seed: int = 0
    http_timeout: float = 60.0


@lru_cache
def ingestor_settings() -> IngestorSettings:
    return IngestorSettings()


class EvaluatorSettings(_Section):
    """Evaluation job defaults (``EVAL_*``); request fields and CLI flags override them."""

    model_config = SettingsConfigDict(env_prefix="EVAL_", extra="ignore")

    # Local copies of task datasets (<dir>/<hub dataset id>) and extra task YAMLs; empty: none.
    data_dir: str = ""
    # Where each evaluation's raw harness output is written (<dir>/<eval id>.json).
    output_dir: Path = REPO_ROOT / "evals"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class MergerSettings(_Section):
    """LoRA merger service (``MERGER_*``)."""

    model_config = SettingsConfigDict(env_prefix="MERGER_", extra="ignore")

    # A running merge holds its record for this long, renewed every third of it; a copy of the
    # task delivered again while the holder lives leaves the merge alone.
    lease_seconds: float = 30.0
    # Seconds between the running merge's looks at its record's cancel flag.
    cancel_poll_seconds: float = 1.0
