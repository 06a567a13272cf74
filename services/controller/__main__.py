"""Start the controller: ``python -m services.controller [--port 21001] ...``.

Every setting of ``CommonSettings``, ``ControllerSettings`` and ``AuthSettings`` is a flag
(``--redis-url``, ``--dispatch-method``, ``--heart-beat-expiration``, ``--controller-api-keys``
(also ``--api-keys``), ``--worker-token`` ...); flags win over the environment (``REDIS_URL``,
``CONTROLLER_*``, ``CONTROLLER_API_KEYS``, ``WORKER_TOKEN`` ...), which wins over the defaults.

Without ``CONTROLLER_API_KEYS`` the controller refuses to start (exit status 2), unless
``ALLOW_UNAUTHENTICATED=true`` asks for every route to be open.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.controller.app import create_app
from services.controller.auth import startup_problem
from shared.cli import fail, parse_settings
from shared.logging_setup import configure_logging
from shared.settings import AuthSettings, CommonSettings, ControllerSettings

log = logging.getLogger("services.controller")

ALIASES = {"--api-keys": "--controller-api-keys"}


def parse_args(
    argv: list[str] | None = None,
) -> tuple[CommonSettings, ControllerSettings, AuthSettings]:
    return parse_settings(
        "camel-chat controller",
        CommonSettings,
        ControllerSettings,
        AuthSettings,
        argv=argv,
        aliases=ALIASES,
        prog="python -m services.controller",
    )


def _warn_about(auth: AuthSettings) -> None:
    if not auth.controller_api_keys:
        log.warning("event=auth_open every route is open (ALLOW_UNAUTHENTICATED, no keys)")
    elif not auth.worker_token and not auth.trusted_worker_networks:
        log.warning(
            "event=no_worker_can_register set WORKER_TOKEN (or TRUSTED_WORKER_NETWORKS): "
            "workers register with it"
        )


def main(argv: list[str] | None = None) -> int:
    common, settings, auth = parse_args(argv)
    if (problem := startup_problem(auth)) is not None:
        return fail(problem, prefix="controller")
    configure_logging("controller", common.log_level, common)
    _warn_about(auth)
    app = create_app(common, settings, auth)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
