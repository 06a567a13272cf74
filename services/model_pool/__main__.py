"""Start a model pool: ``python -m services.model_pool [--port-range 21100-21199]``.

Every flag is a field of ``PoolSettings`` (``POOL_*``) or ``CommonSettings`` (for example
``--controller-address``, ``--redis-url``).
"""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn

from services.model_pool.app import create_app
from services.model_pool.ports import parse_port_range
from services.model_pool.supervisor import ModelPool
from shared.cli import SettingsParser
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, PoolSettings


def parse_pool_args(argv: Sequence[str] | None = None) -> tuple[CommonSettings, PoolSettings]:
    """The flags over the environment; a bad flag or value exits with status 2 naming it."""
    cli = SettingsParser(
        "camel-chat model pool: serves deployed models, one model worker each",
        CommonSettings,
        PoolSettings,
        prog="python -m services.model_pool",
    )
    cli.parse(argv)
    common, settings = cli.settings(CommonSettings), cli.settings(PoolSettings)
    try:
        parse_port_range(settings.port_range)
    except ValueError as exc:
        cli.parser.error(f"--port-range: {exc}")
    if settings.max_models < 1:
        cli.parser.error("--max-models: must be at least 1")
    return common, settings


def main(argv: list[str] | None = None) -> None:
    common, settings = parse_pool_args(argv)
    configure_logging("model_pool", common.log_level)
    pool = ModelPool(settings, common, common.controller_address)
    uvicorn.run(create_app(pool), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
