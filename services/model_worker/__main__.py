"""Start a model worker: ``python -m services.model_worker --model-path <folder or hub id>``."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

import uvicorn

from services.model_worker.app import create_app
from services.model_worker.args import add_model_args, load_from_args
from services.model_worker.engine import ModelEngine, ServingEngine
from services.model_worker.loader import LoadedModel
from services.model_worker.remote import RemoteEngine, remote_context_len
from services.model_worker.template_choice import conversation_for
from shared.conversation import Conversation
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, WorkerSettings

log = logging.getLogger(__name__)


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


def main(argv: list[str] | None = None) -> None:
    common, settings = CommonSettings(), WorkerSettings()
    parser = argparse.ArgumentParser(description="camel-chat model worker")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument(
        "--worker-address",
        default=settings.address,
        help="URL the controller and clients use to reach this worker (default: from host/port)",
    )
    parser.add_argument("--controller-address", default=common.controller_address)
    add_model_args(parser, settings)
    parser.add_argument(
        "--model-names",
        default=settings.model_names,
        help="comma-separated names to serve under (default: the model folder's name)",
    )
    parser.add_argument("--engine", choices=["batch", "sequential"], default=settings.engine)
    parser.add_argument(
        "--limit-model-concurrency",
        "--max-batch-size",
        type=int,
        default=settings.limit_model_concurrency,
        help="requests decoded at once; more wait in the queue",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=settings.max_queue,
        help="waiting requests beyond this get 429 with Retry-After",
    )
    parser.add_argument("--prefill-chunk", type=int, default=settings.prefill_chunk)
    parser.add_argument("--stream-interval", type=int, default=settings.stream_interval)
    parser.add_argument("--heart-beat-interval", type=float, default=settings.heart_beat_interval)
    parser.add_argument("--no-register", action="store_true", default=settings.no_register)
    parser.add_argument(
        "--backend",
        choices=["local", "tgi", "openai"],
        default=settings.backend,
        help="local: load the model here; tgi/openai: forward to --backend-url",
    )
    parser.add_argument("--backend-url", default=settings.backend_url)
    parser.add_argument(
        "--backend-model", default=settings.backend_model, help="model name on an openai backend"
    )
    parser.add_argument("--backend-api-key", default=settings.backend_api_key)
    parser.add_argument(
        "--tokenizer-path",
        default=settings.tokenizer_path,
        help="remote backends: tokenizer for the template and token counts (default: model path)",
    )
    parser.add_argument(
        "--context-len",
        type=int,
        default=settings.context_len,
        help="remote backends: context length when the server does not say",
    )
    parser.add_argument("--seed", type=int, default=settings.seed)
    parser.add_argument("--log-level", default=common.log_level)
    args = parser.parse_args(argv)
    configure_logging("model_worker", args.log_level)

    if args.seed is not None:
        import transformers

        transformers.set_seed(args.seed)
    names = model_names_for(args.model_path, args.model_names)
    if args.backend != "local":
        engine: ServingEngine = remote_engine(parser, args, names)
    else:
        loaded, conversation = load_from_args(parser, args)
        engine = local_engine(args, loaded, conversation, names)
    address = advertised_address(args.host, args.port, args.worker_address)
    app = create_app(
        engine,
        worker_address=address,
        controller_address=args.controller_address,
        heart_beat_interval=args.heart_beat_interval,
        register=not args.no_register,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)


def local_engine(
    args: argparse.Namespace, loaded: LoadedModel, conversation: Conversation, names: list[str]
) -> ModelEngine:
    return ModelEngine(
        loaded,
        names,
        conversation,
        mode=args.engine,
        max_batch_size=args.limit_model_concurrency,
        max_queue=args.max_queue,
        stream_interval=args.stream_interval,
        prefill_chunk=args.prefill_chunk,
    )


def remote_engine(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: list[str]
) -> RemoteEngine:
    from transformers import AutoTokenizer

    if not args.backend_url:
        parser.exit(2, f"error: --backend {args.backend} needs --backend-url\n")
    tokenizer_path = args.tokenizer_path or args.model_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        conversation = conversation_for(tokenizer_path, tokenizer, args.conv_template)
    except (OSError, ValueError, KeyError) as exc:
        parser.exit(2, f"error: could not load the tokenizer {tokenizer_path!r}: {exc}\n")
    context_len = remote_context_len(args.backend, args.backend_url, args.backend_model)
    return RemoteEngine(
        args.backend,
        args.backend_url,
        tokenizer,
        names,
        conversation,
        context_len=context_len or args.context_len,
        remote_model=args.backend_model or None,
        api_key=args.backend_api_key or None,
        max_batch_size=args.limit_model_concurrency,
        max_queue=args.max_queue,
    )


if __name__ == "__main__":
    main()
