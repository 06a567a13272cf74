"""Health checks for compose.yaml and the local runner: ``python -m shared.healthcheck KIND ARG``.

- ``http URL``: the URL answers 2xx.
- ``celery QUEUE``: a Celery worker on this host consumes QUEUE (asked through Celery's control
  API on the broker of REDIS_URL / REDIS_KEY_PREFIX).

Exit status 0 when healthy, 1 when not (what Docker's HEALTHCHECK expects). The local runner calls
:func:`is_healthy` in-process with each service's own environment.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping

import httpx

KINDS = ("http", "celery")


def http_ok(url: str, timeout: float = 5.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).is_success
    except httpx.HTTPError:
        return False


def broker_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, ValueError):
        return False


def celery_queue_served(
    queue: str, environ: Mapping[str, str] | None = None, timeout: float = 2.0
) -> bool:
    """True when a worker named ``<name>@<this hostname>`` answers and consumes ``queue``."""
    from shared.celery_app import make_celery
    from shared.settings import CommonSettings

    overrides = {
        key.lower(): value
        for key, value in (environ or {}).items()
        if key in ("REDIS_URL", "REDIS_KEY_PREFIX", "CELERY_BROKER_URL")
    }
    settings = CommonSettings(**overrides)
    if not broker_answers(settings.broker_url):
        return False  # fail fast instead of Celery's connection retries
    app = make_celery("healthcheck", settings)
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # broker down or unreachable: unhealthy, whatever kombu raised
        return False
    finally:
        app.close()
    host = socket.gethostname()
    return any(
        worker.endswith(f"@{host}") and any(q.get("name") == queue for q in queues)
        for worker, queues in replies.items()
    )


def is_healthy(kind: str, target: str, environ: Mapping[str, str] | None = None) -> bool:
    if kind == "http":
        return http_ok(target)
    if kind == "celery":
        return celery_queue_served(target, environ)
    raise ValueError(f"unknown health check kind {kind!r}; expected one of {', '.join(KINDS)}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in KINDS:
        print(f"usage: python -m shared.healthcheck {{{'|'.join(KINDS)}}} TARGET", file=sys.stderr)
        return 2
    healthy = is_healthy(args[0], args[1])
    print("healthy" if healthy else "unhealthy")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
