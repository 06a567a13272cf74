"""Start a model worker: ``python -m services.model_worker --model-path <folder or hub id>``."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

import uvicorn

from services.model_worker.app import create_app
from services.model_worker.args import add_model_args, load_from_args
from services.model_worker.engine import ModelEngine
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
    parser.add_argument("--seed", type=int, default=settings.seed)
    parser.add_argument("--log-level", default=common.log_level)
    args = parser.parse_args(argv)
    configure_logging("model_worker", args.log_level)

    if args.seed is not None:
        import transformers

        transformers.set_seed(args.seed)
    loaded, conversation = load_from_args(parser, args)
    engine = ModelEngine(
        loaded,
        model_names_for(args.model_path, args.model_names),
        conversation,
        mode=args.engine,
        max_batch_size=args.limit_model_concurrency,
        max_queue=args.max_queue,
        stream_interval=args.stream_interval,
        prefill_chunk=args.prefill_chunk,
    )
    address = advertised_address(args.host, args.port, args.worker_address)
    app = create_app(
        engine,
        worker_address=address,
        controller_address=args.controller_address,
        heart_beat_interval=args.heart_beat_interval,
        register=not args.no_register,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()
