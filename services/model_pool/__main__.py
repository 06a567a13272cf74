"""Start a model pool: ``python -m services.model_pool [--port-range 21100-21199]``.

Every flag is a field of ``PoolSettings`` (``POOL_*``), ``CommonSettings`` (for example
``--controller-address``, ``--redis-url``) or ``AuthSettings`` (the credentials its routes ask for
and its workers get, through their environment).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import uvicorn

from services.model_pool.app import create_app
from services.model_pool.ports import parse_port_range
from services.model_pool.supervisor import ModelPool
from shared.auth import Credentials
from shared.cli import SettingsParser
from shared.credential_guard import no_credentials_error
from shared.logging_setup import configure_logging
from shared.settings import AuthSettings, CommonSettings, PoolSettings


class PoolArgs(NamedTuple):
    common: CommonSettings
    settings: PoolSettings
    auth: AuthSettings


def parse_pool_args(argv: Sequence[str] | None = None) -> PoolArgs:
    """The flags over the environment; a bad flag or value exits with status 2 naming it."""
    cli = SettingsParser(
        "camel-chat model pool: serves deployed models, one model worker each",
        CommonSettings,
        PoolSettings,
        AuthSettings,
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
    auth = cli.settings(AuthSettings)
    if error := no_credentials_error(Credentials.from_settings(auth)):
        cli.parser.exit(2, error + "\n")
    return PoolArgs(common, settings, auth)


def main(argv: list[str] | None = None) -> None:
    common, settings, auth = parse_pool_args(argv)
    configure_logging("model_pool", common.log_level, common)
    pool = ModelPool(settings, common, common.controller_address, auth=auth)
    app = create_app(pool, auth, settings.max_body_bytes)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
