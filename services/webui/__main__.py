"""Start the web chat: ``python -m services.webui [--port 7860] [--controller-address URL] ...``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from services.webui.app import CSS, build_demo
from services.webui.chat_log import ChatLog
from services.webui.controller_client import ControllerClient
from services.webui.management_client import ManagementClient
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, WebUISettings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    common, settings = CommonSettings(), WebUISettings()
    parser = argparse.ArgumentParser(description="camel-chat web UI")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--controller-address", default=common.controller_address)
    parser.add_argument(
        "--concurrency-count",
        type=int,
        default=settings.concurrency_count,
        help="how many chat requests are served at the same time",
    )
    parser.add_argument(
        "--model-list-mode",
        choices=["once", "reload"],
        default=settings.model_list_mode,
        help="fetch the model list once at start-up, or again on every page load",
    )
    parser.add_argument(
        "--conv-log-dir",
        default=settings.conv_log_dir or str(common.log_dir),
        help="folder of the daily conversation log <date>-conv.json",
    )
    parser.add_argument("--log-level", default=common.log_level)
    args = parser.parse_args(argv)

    settings = settings.model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "concurrency_count": args.concurrency_count,
            "model_list_mode": args.model_list_mode,
        }
    )
    configure_logging("webui", args.log_level)
    log.info(
        "event=webui_starting controller=%s host=%s port=%d model_list_mode=%s conv_log_dir=%s",
        args.controller_address,
        settings.host,
        settings.port,
        settings.model_list_mode,
        args.conv_log_dir,
    )
    with (
        ControllerClient(
            args.controller_address, worker_timeout=settings.worker_api_timeout
        ) as client,
        ManagementClient(args.controller_address, api_key=settings.api_key) as management,
    ):
        demo = build_demo(settings, client, management, ChatLog(Path(args.conv_log_dir)))
        demo.launch(
            css=CSS,
            server_name=settings.host,
            server_port=settings.port,
            share=False,
            # Server-side rendering needs a Node process; the plain page needs nothing extra.
            ssr_mode=False,
            show_error=True,
        )


if __name__ == "__main__":
    main()
