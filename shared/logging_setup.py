"""One-line structured logs: ``ts level service logger key=value ...``.

Every service's entry point calls ``configure_logging`` once. Lines go to stderr (what Docker
keeps) and to ``LOG_DIR/<service>.log``, which rolls over at midnight into
``<service>.log.YYYY-MM-DD``; ``LOG_KEEP_DAYS`` of those are kept (CommonSettings).
"""

from __future__ import annotations

import logging
import socket
import sys
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path

from shared.settings import CommonSettings

LOG_FORMAT = "%(asctime)s level=%(levelname)s service={service} logger=%(name)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
# Per-request access lines from these libraries drown the service's own events.
NOISY_LOGGERS = ("httpx", "httpcore", "uvicorn.access")


def log_file_name(service: str, common: CommonSettings) -> str:
    """``LOG_NAME`` (``{hostname}`` filled in) or the service's own name, plus ``.log``."""
    name = common.log_name.replace("{hostname}", socket.gethostname()) or service
    return f"{name}.log"


def rotating_handler(path: Path, keep_days: int, when: str = "midnight") -> logging.Handler:
    """A file handler that starts a new file at local midnight and keeps ``keep_days`` old ones.

    ``when`` is there for tests (``"S"`` rolls every second); ``delay`` opens the file on the
    first line, so a process that never logs leaves no empty file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return TimedRotatingFileHandler(
        path, when=when, backupCount=keep_days, encoding="utf-8", delay=True
    )


def configure_logging(
    service: str,
    level: str = "INFO",
    common: CommonSettings | None = None,
    *,
    to_file: bool = True,
) -> Path | None:
    """Route the root logger to stderr and the service's daily file; returns that file's path.

    ``to_file=False`` for one-off commands (a terminal chat, an ingest run), whose lines would
    otherwise interleave with the long-running service's own file.
    """
    common = common or CommonSettings()
    formatter = logging.Formatter(LOG_FORMAT.format(service=service), datefmt=DATE_FORMAT)
    handlers: list[logging.Handler] = []
    if common.log_console or not (to_file and common.log_to_file):
        handlers.append(logging.StreamHandler(sys.stderr))
    path = None
    if to_file and common.log_to_file:
        path = common.log_dir / log_file_name(service, common)
        handlers.append(rotating_handler(path, common.log_keep_days))
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    for handler in handlers:
        handler.setFormatter(formatter)
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
