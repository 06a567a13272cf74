"""Start the web chat: ``python -m services.webui [--port 7860] [--controller-address URL] ...``.

Every flag is a setting (``WebUISettings``, ``CommonSettings``; ``--help`` lists them): a flag
wins over its environment variable, which wins over the .env file, then the default. With
``CONTROLLER_API_KEYS`` set the page asks for a login (services/webui/login.py).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from pathlib import Path

from services.webui.app import CSS, build_demo
from services.webui.chat_log import ChatLog
from services.webui.controller_client import ControllerClient
from services.webui.login import LOGIN_MESSAGE, login_check, outgoing_key
from services.webui.management_client import ManagementClient
from services.webui.moderation import Moderator
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


# Where Gradio asks for a share tunnel when no FRP server is named.
GRADIO_SHARE_API = ("api.gradio.app", 443)
SHARE_PROBE_SECONDS = 3.0


def tunnel_problem(settings: WebUISettings) -> str:
    """Why ``--share`` cannot open a tunnel here ('' when its server answers).

    Gradio's own attempt on a machine without network can hang on its downloads and then only
    prints a line; a quick connection to the tunnel server first gives a clear answer.
    """
    host, port = GRADIO_SHARE_API
    if settings.share_server_address:
        host, _, port_text = settings.share_server_address.rpartition(":")
        if not host or not port_text.isdigit():
            return f"share_server_address must be host:port: {settings.share_server_address!r}"
        port = int(port_text)
    try:
        socket.create_connection((host, port), timeout=SHARE_PROBE_SECONDS).close()
    except OSError as exc:
        return f"the tunnel server {host}:{port} cannot be reached ({exc})"
    return ""


def share_link_wanted(settings: WebUISettings) -> bool:
    """``--share``, unless no tunnel can be opened: then say so and serve locally only."""
    if not settings.share:
        return False
    problem = tunnel_problem(settings)
    if problem:
        log.warning(
            "event=share_unavailable reason=%r detail='--share: no public link; the page is "
            "served on http://%s:%d only'",
            problem,
            settings.host,
            settings.port,
        )
        return False
    return True


def serve(settings: WebUISettings, common: CommonSettings) -> None:
    """Build the page and serve it until interrupted."""
    log_dir = conv_log_dir(settings, common)
    login = login_check(Credentials.from_settings())
    moderator = Moderator.from_settings(settings)
    log.info(
        "event=webui_starting controller=%s host=%s port=%d model_list_mode=%s conv_log_dir=%s "
        "login=%s moderation=%s",
        common.controller_address,
        settings.host,
        settings.port,
        settings.model_list_mode,
        log_dir,
        "required" if login else "off",
        moderator.url if moderator else "off",
    )
    key = outgoing_key(settings)
    with (
        ControllerClient(
            common.controller_address, worker_timeout=settings.worker_api_timeout, api_key=key
        ) as client,
        ManagementClient(common.controller_address, api_key=key) as management,
    ):
        demo = build_demo(settings, client, management, ChatLog(log_dir), moderator)
        demo.launch(
            css=CSS,
            server_name=settings.host,
            server_port=settings.port,
            auth=login,
            auth_message=LOGIN_MESSAGE if login else None,
            share=share_link_wanted(settings),
            share_server_address=settings.share_server_address or None,
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
