"""Start a model worker: ``python -m services.model_worker --model-path <folder or hub id>``.

Every flag is a field of ``WorkerSettings`` (``WORKER_*``), ``CommonSettings`` (for example
``--controller-address``, ``--log-level``) or ``AuthSettings`` (``--worker-token``,
``--controller-api-keys``: better given in the environment, where ``ps`` does not show them);
FastChat's spellings are kept as other spellings.
"""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import uvicorn

from services.model_worker.app import create_app
from services.model_worker.args import load_configured_model, with_default_model
from services.model_worker.engine import EmbeddingEngine, ModelEngine, ServingEngine
from services.model_worker.remote import RemoteEngine, remote_context_len
from services.model_worker.template_choice import conversation_for
from shared.auth import Credentials
from shared.cli import SettingsParser
from shared.credential_guard import no_credentials_error
from shared.logging_setup import configure_logging
from shared.settings import AuthSettings, CommonSettings, WorkerSettings

log = logging.getLogger(__name__)

# FastChat's (and earlier camel-chat's) flags, kept working.
ALIASES = {
    "--worker-address": "--address",
    "--max-batch-size": "--limit-model-concurrency",
    "--no-register": "--no-register-to-controller",
}


def model_names_for(model_path: str, names: str) -> list[str]:
    if names:
        return [n.strip() for n in names.split(",") if n.strip()]
    return [Path(model_path.rstrip("/")).name]


def advertised_address(host: str, port: int, address: str) -> str:
    if address:
        return address.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{port}"


class WorkerArgs(NamedTuple):
    parser: argparse.ArgumentParser
    common: CommonSettings
    settings: WorkerSettings
    auth: AuthSettings


def parse_worker_args(argv: Sequence[str] | None = None) -> WorkerArgs:
    """The flags over the environment; a bad flag or value exits with status 2 naming it."""
    cli = SettingsParser(
        "camel-chat model worker: serves one model over the FastChat worker and TGI protocols",
        CommonSettings,
        WorkerSettings,
        AuthSettings,
        aliases=ALIASES,
        prog="python -m services.model_worker",
    )
    cli.parse(argv)
    auth = cli.settings(AuthSettings)
    if error := no_credentials_error(Credentials.from_settings(auth)):
        cli.parser.exit(2, error + "\n")
    return WorkerArgs(
        cli.parser,
        cli.settings(CommonSettings),
        with_default_model(cli.settings(WorkerSettings)),
        auth,
    )


def local_engine(
    parser: argparse.ArgumentParser, settings: WorkerSettings, names: list[str]
) -> ServingEngine:
    loaded, conversation = load_configured_model(parser, settings)
    if not loaded.generates:
        return EmbeddingEngine(
            loaded,
            names,
            conversation,
            max_queue=settings.max_queue,
            embedding_batch_size=settings.embedding_batch_size,
        )
    return ModelEngine(
        loaded,
        names,
        conversation,
        mode=settings.engine,
        max_batch_size=settings.limit_model_concurrency,
        max_queue=settings.max_queue,
        stream_interval=settings.stream_interval,
        prefill_chunk=settings.prefill_chunk,
        prefill_budget=settings.prefill_budget,
        gather_gap_ms=settings.gather_gap_ms,
        gather_max_ms=settings.gather_max_ms,
        embedding_batch_size=settings.embedding_batch_size,
        fast_path=settings.fast_path,
        prefix_cache_mb=settings.prefix_cache_mb,
        single_thread_below=settings.single_thread_below,
        kv_cache_mb=settings.kv_cache_mb,
    )


def remote_engine(
    parser: argparse.ArgumentParser, settings: WorkerSettings, names: list[str]
) -> RemoteEngine:
    from transformers import AutoTokenizer

    if not settings.backend_url:
        parser.exit(2, f"error: --backend {settings.backend} needs --backend-url\n")
    tokenizer_path = settings.tokenizer_path or settings.model_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        conversation = conversation_for(tokenizer_path, tokenizer, settings.conv_template)
    except (OSError, ValueError, KeyError) as exc:
        parser.exit(2, f"error: could not load the tokenizer {tokenizer_path!r}: {exc}\n")
    context_len = remote_context_len(settings.backend, settings.backend_url, settings.backend_model)
    return RemoteEngine(
        settings.backend,
        settings.backend_url,
        tokenizer,
        names,
        conversation,
        context_len=context_len or settings.context_len,
        remote_model=settings.backend_model or None,
        api_key=settings.backend_api_key or None,
        max_batch_size=settings.limit_model_concurrency,
        max_queue=settings.max_queue,
    )


def main(argv: list[str] | None = None) -> None:
    parser, common, settings, auth = parse_worker_args(argv)
    configure_logging("model_worker", common.log_level, common)
    if settings.seed is not None:
        import transformers

        transformers.set_seed(settings.seed)
    names = model_names_for(settings.model_path, settings.model_names)
    make_engine = local_engine if settings.backend == "local" else remote_engine
    engine: ServingEngine = make_engine(parser, settings, names)
    app = create_app(
        engine,
        worker_address=advertised_address(settings.host, settings.port, settings.address),
        controller_address=common.controller_address,
        heart_beat_interval=settings.heart_beat_interval,
        register=settings.register_to_controller,
        auth=auth,
        max_body_bytes=settings.max_body_bytes,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_keep_alive=settings.keep_alive,
    )


if __name__ == "__main__":
    main()
