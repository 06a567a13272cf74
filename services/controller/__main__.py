"""Start the controller: ``python -m services.controller [--port 21001] ...``."""

from __future__ import annotations

import argparse

import uvicorn

from services.controller.app import create_app
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, ControllerSettings


def main(argv: list[str] | None = None) -> None:
    common, settings = CommonSettings(), ControllerSettings()
    parser = argparse.ArgumentParser(description="camel-chat controller")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument(
        "--dispatch-method", choices=["lottery", "shortest_queue"], default=settings.dispatch_method
    )
    parser.add_argument(
        "--heart-beat-expiration",
        type=float,
        default=settings.heart_beat_expiration,
        help="seconds without heartbeat after which a worker leaves routing",
    )
    parser.add_argument(
        "--api-keys",
        default=settings.api_keys,
        help="comma-separated Bearer keys required on the OpenAI-compatible /v1 routes",
    )
    parser.add_argument("--redis-url", default=common.redis_url)
    parser.add_argument("--redis-key-prefix", default=common.redis_key_prefix)
    parser.add_argument("--log-level", default=common.log_level)
    args = parser.parse_args(argv)

    common = common.model_copy(
        update={"redis_url": args.redis_url, "redis_key_prefix": args.redis_key_prefix}
    )
    settings = settings.model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "dispatch_method": args.dispatch_method,
            "heart_beat_expiration": args.heart_beat_expiration,
            "api_keys": args.api_keys,
        }
    )
    configure_logging("controller", args.log_level)
    uvicorn.run(create_app(common, settings), host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()
