"""All configuration, read from environment variables, with defaults that run locally.

Every service builds its CLI on top of these values (flags override the environment).
Names are grouped by prefix: ``REDIS_*``, ``CONTROLLER_*``, ``WORKER_*``, ``WEBUI_*``.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.http_limits import DEFAULT_MAX_BODY_BYTES

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"

# Names the .env file that credentials are read from; set to "" to read none (the tests do).
ENV_FILE_VARIABLE = "CAMEL_ENV_FILE"


def env_file() -> Path | None:
    """The .env file ``make up`` writes the stack's credentials into: $CAMEL_ENV_FILE, else
    <repo>/.env; None when $CAMEL_ENV_FILE is set empty."""
    value = os.environ.get(ENV_FILE_VARIABLE)
    if value is None:
        return REPO_ROOT / ".env"
    return Path(value) if value else None


class _Section(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)


class _ReadsEnvFile(_Section):
    """A section that also reads ``env_file()`` (under the environment, which wins), so our
    clients find the keys ``make up`` generated without anyone exporting them."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = env_file()
        dotenv = DotEnvSettingsSource(settings_cls, env_file=path) if path else dotenv_settings
        return init_settings, env_settings, dotenv, file_secret_settings


# The async Redis pool's size and wait (shared/redis_client.py uses them when not told).
REDIS_MAX_CONNECTIONS = 256
REDIS_POOL_WAIT_S = 20.0


class CommonSettings(_Section):
    """Settings every service shares (environment variables without a prefix: ``REDIS_URL`` ...)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = Field("camelchat:", description="every Redis key starts with it")
    redis_max_connections: int = Field(
        REDIS_MAX_CONNECTIONS,
        gt=0,
        description="connections an async service opens to Redis at most; a burst of more "
        "concurrent commands waits for a free one (up to REDIS_POOL_WAIT seconds)",
    )
    redis_pool_wait: float = Field(
        REDIS_POOL_WAIT_S, gt=0, description="seconds a command waits for a free Redis connection"
    )
    controller_address: str = "http://127.0.0.1:21001"
    log_dir: Path = REPO_ROOT / "logs"
    log_level: str = "INFO"
    log_to_file: bool = Field(
        True,
        description="each service also writes LOG_DIR/<LOG_NAME>.log, rotated at midnight",
    )
    log_name: str = Field(
        "",
        description="the log file's name without .log; empty: the service's own name; "
        "{hostname} becomes the host's name (compose replicas share the logs volume)",
    )
    log_keep_days: int = Field(
        7, ge=1, description="rotated log files kept (one a day); older ones are deleted"
    )
    log_console: bool = Field(
        True, description="also log to stderr (off where stderr is captured into a file anyway)"
    )
    models_dir: Path = Field(REPO_ROOT / "models", description="published and served models")
    datasets_dir: Path = Field(
        REPO_ROOT / "datasets", description="built datasets, one folder per dataset id"
    )
    celery_broker_url: str = Field("", description="Celery broker and results; empty: REDIS_URL")
    celery_visibility_timeout: float = Field(
        3600.0,
        description="seconds before Celery delivers an unacknowledged job again (a job whose "
        "runner died is sent again sooner, once its lease runs out)",
    )
    jobs_dir: Path = Field(
        REPO_ROOT / "checkpoints", description="fine-tuning jobs' checkpoints and results"
    )
    import_dir: Path = Field(
        REPO_ROOT / "imports",
        description="where operators put users' files to ingest or train on; a request may name "
        "server paths only under MODELS_DIR, DATASETS_DIR, JOBS_DIR and this folder",
    )
    models_allow_overwrite: bool = Field(
        False,
        description="let a merge replace a published model (overwrite: true); the default "
        "model is never replaced",
    )
    job_lease_seconds: float = Field(
        10.0,
        gt=0,
        description="a running job holds its record this long, renewed every third of it",
    )
    job_cancel_poll_seconds: float = Field(
        1.0, gt=0, description="seconds between a running job's looks at its cancel flag"
    )
    job_orphan_scan_seconds: float = Field(
        2.0, gt=0, description="seconds between looks for jobs whose runner died"
    )

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url


class AuthSettings(_ReadsEnvFile):
    """Who may call what; every service reads it (environment variables without a prefix, then
    the .env file of ``env_file()``).

    Users hold API keys (``CONTROLLER_API_KEYS``); the stack's own processes share one worker
    token (``WORKER_TOKEN``): workers send it to register and heartbeat, the controller and the
    model pool send it to workers. ``make up`` writes both into ``.env`` on its first run.
    """

    controller_api_keys: str = Field(
        "",
        description="comma-separated Bearer keys of users: the /v1 API, the management routes, "
        "the web UI, and generation straight on a worker",
    )
    worker_token: str = Field(
        "",
        description="shared secret of the stack's own processes: workers registering and "
        "heartbeating, the controller and the model pool calling workers",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="run with every route open when no key is configured (a closed network "
        "only); otherwise a controller without CONTROLLER_API_KEYS refuses to start",
    )
    trusted_worker_networks: str = Field(
        "",
        description="comma-separated networks (CIDR) whose workers may register without the "
        "worker token, e.g. FastChat's own workers, which send none; empty: none",
    )
    public_metrics: bool = Field(
        False, description="serve /metrics without a key (for a scraper on a closed network)"
    )


class ControllerSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="CONTROLLER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 21001
    dispatch_method: Literal["lottery", "shortest_queue"] = Field(
        "shortest_queue", description="how a request picks among the workers serving its model"
    )
    heart_beat_expiration: float = Field(
        2.5,
        gt=0,
        description="seconds without a heartbeat after which a worker leaves routing (always: "
        "a registration's check_heart_beat is not honoured)",
    )
    routing_refresh: float = Field(
        0.5,
        ge=0,
        description="seconds between the controller's reads of the worker registry for choosing "
        "workers (in the background, from the first request on; a request waits for a read only "
        "when the last is older than heart_beat_expiration or names no worker of its model); "
        "0: read on every request",
    )
    worker_status_timeout: float = Field(
        5.0, description="timeout in seconds of the controller's status polls of a worker"
    )
    worker_api_timeout: float = Field(
        100.0, description="seconds to wait on a worker between chunks of a generation"
    )
    pending_worker_grace: float = Field(
        60.0,
        gt=0,
        description="seconds a worker that registered with a worker_status before answering "
        "(FastChat's model_worker) has to answer its own status; it is not routed to meanwhile",
    )
    worker_response_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds a worker may take to start answering a generation request (it "
        "answers before any token); longer: the request goes to another worker",
    )
    worker_connect_timeout: float = Field(
        2.0,
        gt=0,
        description="seconds to connect to a worker; a worker that cannot be reached in time "
        "leaves routing and the request goes to another",
    )
    worker_keepalive_connections: int = Field(
        256,
        ge=0,
        description="idle connections to workers kept open for the next requests; connections "
        "in use are not capped here (each worker's own concurrency limit bounds them)",
    )
    worker_keepalive_expiry: float = Field(
        60.0,
        gt=0,
        description="seconds an idle connection to a worker is kept for the next request; "
        "below the worker's own keep-alive (WORKER_KEEP_ALIVE), so a burst after a quiet "
        "spell does not reconnect",
    )
    worker_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="more workers a request tries when its worker fails before the first token "
        "(refused or timed-out connection, 5xx or 429, a stream that ends before any output)",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="largest request body, in bytes (larger: 413)"
    )
    max_upload_bytes: int = Field(
        2 * 1024 * 1024 * 1024,
        gt=0,
        description="largest request body of POST /v1/datasets (file uploads), in bytes",
    )
    known_model_ttl: float = Field(
        86400.0,
        description="seconds a model name stays known after it was last served: a request for it "
        "while no worker serves it gets 503 (retry later) within that time and 404 after",
    )


class ClientSettings(_ReadsEnvFile):
    """Command-line clients of the controller (``test_message``, ``register_worker``, the demo):
    the environment, then the .env file of ``env_file()`` (where ``make up`` writes the key)."""

    controller_address: str = Field(
        CommonSettings.model_fields["controller_address"].default,
        description="base URL of the controller",
    )
    controller_api_key: str = Field(
        "",
        description="Bearer key sent to the controller and to workers (one of the stack's "
        "CONTROLLER_API_KEYS); empty: none",
    )


_MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B)?$", re.IGNORECASE)


class ModelSettings(_Section):
    """The model a process runs and how (``WORKER_*``): shared by the worker and the terminal
    chat, which read the same variables."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    model_path: str = Field(
        "", description="local Hugging Face folder or Hub id; empty: the embedded default model"
    )
    conv_template: str = Field(
        "",
        description="vicuna_v1.1, one_shot or chat_template; empty: chosen from the model "
        "(the template it was trained with, else by its name and tokenizer)",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="auto: bfloat16 on a CUDA GPU that has it (else float16), float16 on MPS, "
        "bfloat16 on a CPU with AVX512-BF16 or AMX, else float32",
    )
    load_8bit: bool = Field(False, description="quantize to 8 bits with bitsandbytes")
    load_4bit: bool = Field(False, description="quantize to 4 bits (NF4) with bitsandbytes")
    num_gpus: int = Field(
        1,
        ge=1,
        le=64,
        description="GPUs to split the model across (accelerate's device_map); with device auto "
        "and no GPU, the model runs on the CPU with a warning",
    )
    gpus: str = Field(
        "",
        description="GPU ids to use, e.g. 0,2 (sets CUDA_VISIBLE_DEVICES); at least num_gpus ids",
    )
    max_gpu_memory: str = Field(
        "",
        description="memory cap per GPU, e.g. 13GiB; the model is split to stay under it; "
        "empty: 85% of each GPU's free memory when split",
    )
    cpu_offloading: bool = Field(
        False,
        description="keep the layers that do not fit the GPUs in CPU memory (in fp32 with "
        "load_8bit)",
    )
    max_cpu_memory: str = Field(
        "",
        description="CPU memory cap for the model's weights, e.g. 2GiB; what does not fit is "
        "offloaded to disk (offload_folder); empty: no cap",
    )
    offload_folder: str = Field(
        "", description="where weights offloaded to disk go; empty: a temporary folder"
    )

    @field_validator("max_gpu_memory", "max_cpu_memory")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        """A size accelerate reads (``13GiB``, ``500MB``, bytes), checked before any loading."""
        if value and not _MEMORY_SIZE.match(value.strip()):
            raise ValueError(f"{value!r} is not a memory size such as 13GiB or 500MB")
        return value.strip()

    @field_validator("gpus")
    @classmethod
    def _gpu_ids(cls, value: str) -> str:
        if value and not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", value):
            raise ValueError(f"{value!r} is not a list of GPU ids such as 0,2")
        return value.replace(" ", "")

    stream_interval: int = Field(2, description="tokens between streamed snapshots")
    # transformers.set_seed hands it to numpy too, which takes 32 bits.
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="random seed, for repeatable sampling"
    )


class WorkerSettings(ModelSettings):
    """A model worker: the model (``ModelSettings``), how it serves it, and where it registers."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 21002
    address: str = Field(
        "",
        description="URL the controller and clients use to reach this worker; "
        "empty: derived from host and port",
    )
    model_names: str = Field(
        "", description="comma-separated names to serve under; empty: the model folder's name"
    )
    engine: Literal["batch", "sequential"] = Field(
        "batch",
        description="batch: continuous batching; sequential: one request at a time per thread "
        "(the original's way)",
    )
    limit_model_concurrency: int = Field(
        64, description="requests decoded at once; more wait in the queue"
    )
    max_queue: int = Field(
        256, description="waiting requests beyond this are refused with 429 and Retry-After"
    )
    embedding_batch_size: int = Field(
        8, ge=1, le=1024, description="inputs run through the model at once for embeddings"
    )
    prefill_chunk: int = Field(
        512,
        description="prompt tokens per prefill pass (a group of whole prompts, or a chunk of a "
        "long one), so long prompts do not stall running streams",
    )
    prefill_budget: int = Field(
        2048,
        ge=1,
        description="prompt tokens prefilled between two decode steps while streams run: "
        "requests arriving together start sooner, running streams wait up to this much "
        "prefill for one token",
    )
    gather_gap_ms: float = Field(
        5.0,
        ge=0,
        description="with nothing running, the first prefill pass waits while requests keep "
        "arriving: until none has come for this long, a pass is full, or gather_max_ms; a "
        "burst then shares passes instead of its first request going alone (a lone request "
        "waits this long); 0: start at once",
    )
    gather_max_ms: float = Field(
        30.0, ge=0, description="the longest the first prefill pass waits for a burst"
    )
    keep_alive: int = Field(
        75,
        gt=0,
        description="seconds an idle HTTP connection stays open: longer than the controller "
        "keeps its idle connections (CONTROLLER_WORKER_KEEPALIVE_EXPIRY), so the controller "
        "closes them first and never sends a request on one the worker is closing",
    )
    fast_path: bool = Field(
        True,
        description="LLaMA-style models decode through the lean forward with a static KV cache "
        "(services/model_worker/lean_llama.py); false: transformers' forward for every model",
    )
    prefix_cache_mb: int = Field(
        256,
        ge=0,
        description="memory for the keys/values of recent prompts on the fast path, so prompts "
        "sharing a beginning (system message, conversation history) skip it; 0: off",
    )
    single_thread_below: int = Field(
        20,
        ge=0,
        description="decode steps of fewer rows than this run on one CPU thread (memory-bound; "
        "a second thread mostly waits), bigger ones and prefill on all; 0: always all",
    )
    kv_cache_mb: int = Field(
        4096,
        ge=0,
        description="memory the fast path's running batch may allocate for keys/values; "
        "requests that would take it past this wait for running ones to finish; 0: no bound",
    )
    heart_beat_interval: float = Field(
        1.0,
        gt=0,
        description="seconds between heartbeats (the controller drops a worker after 3 s "
        "without one)",
    )
    register_to_controller: bool = Field(
        True, description="register with the controller and keep sending heartbeats"
    )
    backend: Literal["local", "tgi", "openai"] = Field(
        "local",
        description="local: the model runs here; tgi / openai: forward to an existing server at "
        "backend_url",
    )
    backend_url: str = ""
    backend_model: str = Field("", description="model name on an openai backend")
    backend_api_key: str = ""
    tokenizer_path: str = Field(
        "",
        description="remote backends: the tokenizer for templates and token counts; "
        "empty: model_path",
    )
    context_len: int = Field(
        4096, description="remote backends: context length when the server does not say"
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES,
        gt=0,
        description="largest request body accepted (larger ones get 413); bounds the prompt",
    )


class PoolSettings(_Section):
    """The model pool: a supervisor that serves deployed models, one model worker each."""

    model_config = SettingsConfigDict(env_prefix="POOL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(21099, description="the pool's own HTTP port (health and what it runs)")
    port_range: str = Field(
        "21100-21199",
        pattern=r"^\d{1,5}-\d{1,5}$",
        description='ports handed to the model workers it starts, "first-last"',
    )
    advertise_host: str = Field(
        "",
        description="host name the controller and clients use to reach its workers; empty: host",
    )
    max_models: int = Field(4, description="most models served at once by this pool")
    name: str = Field("", description="name of this pool in deployment records; empty: host:pid")
    poll_interval: float = Field(1.0, description="seconds between looks at the deployment records")
    load_timeout: float = Field(
        600.0,
        description="seconds a model worker may take to load and answer before its deployment "
        "fails",
    )
    worker_args: str = Field(
        "",
        description='extra flags for every model worker it starts (e.g. "--dtype bfloat16 '
        '--max-batch-size 16"); credentials go to them through the environment instead',
    )
    max_body_bytes: int = Field(
        64 * 1024, gt=0, description="largest request body accepted (larger ones get 413)"
    )


class WebUISettings(_ReadsEnvFile):
    model_config = SettingsConfigDict(env_prefix="WEBUI_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7860
    concurrency_count: int = 10
    model_list_mode: Literal["once", "reload"] = "reload"
    # How long the page waits on a worker between streamed chunks before giving up.
    worker_api_timeout: float = 100.0
    # Folder of the conversation log (<date>-conv.json); empty: LOG_DIR.
    conv_log_dir: str = ""
    api_key: str = Field(
        "",
        description="Bearer key the page sends to the controller and to workers (one of "
        "CONTROLLER_API_KEYS); empty: the stack's WORKER_TOKEN",
    )
    # Seconds between refreshes of the training and models pages (and the chat's model list).
    refresh_seconds: float = 2.0
    # Base models offered by the fine-tuning form (comma-separated folders or Hub ids; any other
    # can be typed); empty: the embedded default model.
    base_models: str = ""
    share: bool = Field(
        False,
        description="also ask Gradio for a public share link; when no tunnel can be opened the "
        "page is served here only, and the log says why",
    )
    share_server_address: str = Field(
        "", description="host:port of the FRP server --share tunnels through; empty: Gradio's"
    )
    moderate: bool = Field(
        False,
        description="check every message with an OpenAI-compatible /moderations endpoint "
        "first; a flagged one is not sent",
    )
    moderation_base_url: str = Field(
        "https://api.openai.com/v1",
        description="base URL of the moderation API (POST <base>/moderations)",
    )
    moderation_api_key: str = Field(
        "", description="Bearer key of the moderation API; empty: OPENAI_API_KEY, if set"
    )
    moderation_timeout: float = Field(
        5.0, gt=0, description="seconds to wait for a moderation verdict (then: not flagged)"
    )


class GatewaySettings(_Section):
    """The nginx gateway (``GATEWAY_*``): the web UI and the public API on one port, with the
    connection and request-rate limits of FastChat's sample nginx.conf (services/gateway)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, gt=0, lt=65536)
    webui_url: str = Field("http://127.0.0.1:7860", description="the web UI behind /")
    api_url: str = Field(
        "", description="the controller behind /v1/ (its public API); empty: CONTROLLER_ADDRESS"
    )
    conn_per_ip: int = Field(
        64, gt=0, description="requests in progress at once from one client address (more: 429)"
    )
    conn_per_server: int = Field(
        1024, gt=0, description="requests in progress at once in all (more: 429)"
    )
    rate: str = Field(
        "50r/s",
        pattern=r"^[1-9][0-9]*r/[sm]$",
        description="sustained requests per client address (nginx limit_req: N r/s or N r/m)",
    )
    rate_burst: int = Field(
        400, ge=0, description="requests over the rate let through at once (a page's assets)"
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, gt=0, description="largest request body, in bytes (larger: 413)"
    )
    max_upload_bytes: int = Field(
        2 * 1024 * 1024 * 1024,
        gt=0,
        description="largest body of POST /v1/datasets (file uploads), streamed to the controller",
    )
    read_timeout: int = Field(
        3600, gt=0, description="seconds a streamed reply may stay silent before it is cut"
    )
    nginx: str = Field("", description="the nginx binary; empty: nginx on PATH, else /usr/sbin")
    run_dir: str = Field(
        "", description="folder of nginx.conf, its pid and temporary files; empty: a new temp one"
    )


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

    download_dir: Path = Field(
        REPO_ROOT / "datasets",
        description="folder of Hub downloads and their extracted archives, shared between runs; "
        "the download and convert commands also write <name>_conv.json there",
    )
    tokenizer_path: str = Field(
        "",
        description="tokenizer of the model to train, whose token counts define the budget; "
        "empty: the embedded default model's",
    )
    max_length: int = Field(
        2048, description="token budget of one sample (each turn costs its tokens + 6)"
    )
    keep_lang: str = Field(
        "en", description="language code to keep (as py3langid names it), or 'all' for every one"
    )
    skip_lang: str | None = Field(None, description="language code to drop")
    reduce_rep: bool = Field(
        False, description="drop conversations with a digit repeated 9 times in a row"
    )
    workers: int | None = Field(
        None, description="processes for conversion and filtering; none: one per CPU core"
    )
    seed: int = Field(0, description="seed of the shuffle and of the generated record ids")
    http_timeout: float = Field(60.0, description="seconds to wait on a URL download")
    url_allowed_hosts: str = Field(
        "huggingface.co,*.huggingface.co,hf.co,*.hf.co",
        description="comma-separated hosts URL sources are fetched from ('*.example.org': its "
        "subdomains); a host resolving to a private, loopback, link-local, multicast or reserved "
        "address is fetched only when listed by its exact name",
    )
    max_download_bytes: int = Field(
        20 * 1024**3, gt=0, description="largest URL download, in bytes; a bigger one is refused"
    )
    max_redirects: int = Field(5, ge=0, description="redirects followed by a URL download")
    upload_max_file_bytes: int = Field(
        2 * 1024**3, gt=0, description="largest file uploaded to POST /v1/datasets, in bytes"
    )
    upload_max_total_bytes: int = Field(
        4 * 1024**3, gt=0, description="most bytes of files uploaded in one POST /v1/datasets"
    )
    upload_max_files: int = Field(64, gt=0, description="most files uploaded in one request")


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


class TrainerSettings(_Section):
    """Trainer service (``TRAINER_*``)."""

    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore")

    gpus: int | None = Field(
        None, ge=0, description="GPUs this trainer offers to jobs; empty: the GPUs torch sees"
    )


class MergerSettings(_Section):
    """LoRA merger service (``MERGER_*``)."""

    model_config = SettingsConfigDict(env_prefix="MERGER_", extra="ignore")
