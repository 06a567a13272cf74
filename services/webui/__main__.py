"""Start the web chat: ``python -m services.webui [--port 7860] [--controller-address URL] ...``.

Every flag is a setting (``WebUISettings``, ``CommonSettings``; ``--help`` lists them): a flag
wins over its environment variable, which wins over the .env file, then the default. With
``CONTROLLER_API_KEYS`` set the page asks for a login (services/webui/login.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from services.webui.app import CSS, build_demo
from services.webui.chat_log import ChatLog
from services.webui.controller_client import ControllerClient
from services.webui.login import LOGIN_MESSAGE, login_check, outgoing_key
from services.webui.management_client import ManagementClient
from shared.auth import Credentials
from shared.cli import SettingsParser
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, WebUISettings

log = logging.getLogger(__name__)

# FastChat's gradio_web_server spelling.
ALIASES = {"--controller-url": "--controller-address"}


def parse_args(argv: Sequence[str] | None = None) -> tuple[WebUISettings, CommonSettings]:
    cli = SettingsParser(
        "camel-chat web UI",
        WebUISettings,
        CommonSettings,
        aliases=ALIASES,
        prog="python -m services.webui",
    )
    cli.parse(argv)
    return cli.settings(WebUISettings), cli.settings(CommonSettings)


def conv_log_dir(settings: WebUISettings, common: CommonSettings) -> Path:
    """The conversation log's folder: ``--conv-log-dir``, else the common log folder."""
    return Path(settings.conv_log_dir) if settings.conv_log_dir else common.log_dir


def serve(settings: WebUISettings, common: CommonSettings) -> None:
    """Build the page and serve it until interrupted."""
    log_dir = conv_log_dir(settings, common)
    login = login_check(Credentials.from_settings())
    log.info(
        "event=webui_starting controller=%s host=%s port=%d model_list_mode=%s conv_log_dir=%s "
        "login=%s",
        common.controller_address,
        settings.host,
        settings.port,
        settings.model_list_mode,
        log_dir,
        "required" if login else "off",
    )
    key = outgoing_key(settings)
    with (
        ControllerClient(
            common.controller_address, worker_timeout=settings.worker_api_timeout, api_key=key
        ) as client,
        ManagementClient(common.controller_address, api_key=key) as management,
    ):
        demo = build_demo(settings, client, management, ChatLog(log_dir))
        demo.launch(
            css=CSS,
            server_name=settings.host,
            server_port=settings.port,
            auth=login,
            auth_message=LOGIN_MESSAGE if login else None,
            share=False,
            # Server-side rendering needs a Node process; the plain page needs nothing extra.
            ssr_mode=False,
            show_error=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    settings, common = parse_args(argv)
    configure_logging("webui", common.log_level, common)
    serve(settings, common)


if __name__ == "__main__":
    main()
