"""``python -m services.ingestor worker``: the ingestor service, a Celery worker on queue
``ingest`` (one build at a time; each build uses every core itself)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.celery_app import INGEST_QUEUE, worker_main

HELP = "serve dataset builds from the Celery queue `ingest`"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    worker_main("ingestor", [INGEST_QUEUE], argv, description=HELP, prog=prog)
    return 0
