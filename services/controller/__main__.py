"""Start the controller: ``python -m services.controller [--port 21001] ...``.

Every setting of ``CommonSettings`` and ``ControllerSettings`` is a flag (``--redis-url``,
``--dispatch-method``, ``--heart-beat-expiration``, ``--api-keys`` ...); flags win over the
environment (``REDIS_URL``, ``CONTROLLER_*``), which wins over the defaults.
"""

from __future__ import annotations

import uvicorn

from services.controller.app import create_app
from shared.cli import parse_settings
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, ControllerSettings


def parse_args(argv: list[str] | None = None) -> tuple[CommonSettings, ControllerSettings]:
    return parse_settings(
        "camel-chat controller",
        CommonSettings,
        ControllerSettings,
        argv=argv,
        prog="python -m services.controller",
    )


def main(argv: list[str] | None = None) -> None:
    common, settings = parse_args(argv)
    configure_logging("controller", common.log_level)
    app = create_app(common, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
