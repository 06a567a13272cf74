"""Start the gateway: ``python -m services.gateway [--port 8080] [--webui-url URL] ...``.

Renders nginx.conf (services/gateway/nginx.conf.in) into its run folder and runs nginx in the
foreground as a child; nginx's access and error lines come back through a pipe and are logged
like every service's (stderr and LOG_DIR/<LOG_NAME>.log, rotated daily). SIGTERM stops nginx.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from services.gateway.config import GatewayConfigError, find_nginx, render
from shared.cli import SettingsParser
from shared.logging_setup import configure_logging
from shared.processes import die_with_parent
from shared.settings import CommonSettings, GatewaySettings

log = logging.getLogger("nginx")

NGINX_LEVEL = re.compile(r"\[(emerg|alert|crit|error|warn|notice|info|debug)\]")
LEVELS = {"emerg": 50, "alert": 50, "crit": 50, "error": 40, "warn": 30, "notice": 20}
MISSING_NGINX = (
    "error: nginx is not installed (Debian: apt-get install nginx-light; `make up` installs it "
    "when run as root) or GATEWAY_NGINX names no program"
)


def parse_args(argv: Sequence[str] | None) -> tuple[GatewaySettings, CommonSettings]:
    cli = SettingsParser(
        "camel-chat gateway (nginx)",
        GatewaySettings,
        CommonSettings,
        prog="python -m services.gateway",
    )
    cli.parse(argv)
    return cli.settings(GatewaySettings), cli.settings(CommonSettings)


def prepare_run_dir(settings: GatewaySettings) -> Path:
    """The folder of nginx.conf, its pid and temp files; traversable by nginx's workers (which
    drop to another user when started as root)."""
    folder = Path(settings.run_dir or tempfile.mkdtemp(prefix="camel-gateway-"))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o711)
    return folder


def relay(line: str) -> None:
    """One line of nginx's output into our log, at nginx's own level for error lines."""
    match = NGINX_LEVEL.search(line)
    level = LEVELS.get(match.group(1), logging.DEBUG) if match else logging.INFO
    log.log(level, "%s", line)


def run_nginx(nginx: str, run_dir: Path) -> int:
    """nginx in the foreground until it exits (or we are told to stop it); its exit status."""
    conf = run_dir / "nginx.conf"
    command = [nginx, "-p", str(run_dir), "-e", "stderr", "-c", str(conf)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        preexec_fn=die_with_parent,  # no nginx left behind if the launcher is killed
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("event=gateway_stopping signal=%d", signum)
        if proc.poll() is None:
            proc.terminate()  # nginx's fast shutdown: open streams are cut, not waited for

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    assert proc.stdout is not None
    for line in proc.stdout:
        relay(line.rstrip("\n"))
    return proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    settings, common = parse_args(argv)
    configure_logging("gateway", common.log_level, common)
    nginx = find_nginx(settings.nginx)
    if nginx is None:
        print(MISSING_NGINX, file=sys.stderr)
        return 2
    run_dir = prepare_run_dir(settings)
    try:
        (run_dir / "nginx.conf").write_text(render(settings, common, run_dir))
    except GatewayConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info(
        "event=gateway_starting listen=%s:%d webui=%s api=%s conf=%s pid=%d",
        settings.host,
        settings.port,
        settings.webui_url,
        settings.api_url or common.controller_address,
        run_dir / "nginx.conf",
        os.getpid(),
    )
    try:
        return run_nginx(nginx, run_dir)
    finally:
        if not settings.run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
