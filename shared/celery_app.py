"""Celery plumbing shared by the services: one app factory, queue names and task names.

The controller sends tasks by name (``send_task``) and never imports a worker service's code;
each worker service registers its tasks on an app made here and consumes its own queue.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from celery import Celery

from shared.logging_setup import configure_logging
from shared.settings import CommonSettings

INGEST_QUEUE = "ingest"
TRAIN_QUEUE = "train"
MERGE_QUEUE = "merge"
EVAL_QUEUE = "eval"

BUILD_DATASET_TASK = "ingest.build_dataset"
TRAIN_JOB_TASK = "train.run_job"
MERGE_TASK = "merge.run"
EVAL_RUN_TASK = "eval.run"

TASK_QUEUES = {
    BUILD_DATASET_TASK: INGEST_QUEUE,
    TRAIN_JOB_TASK: TRAIN_QUEUE,
    MERGE_TASK: MERGE_QUEUE,
}
TASK_QUEUES[EVAL_RUN_TASK] = EVAL_QUEUE


def train_queue(gpus: int) -> str:
    """Jobs needing GPUs go to ``train-gpu-N``; a trainer with G GPUs consumes N <= G."""
    return TRAIN_QUEUE if gpus <= 0 else f"{TRAIN_QUEUE}-gpu-{gpus}"


def make_celery(name: str, settings: CommonSettings | None = None) -> Celery:
    settings = settings or CommonSettings()
    app = Celery(name, broker=settings.broker_url, backend=settings.broker_url)
    app.conf.update(
        task_routes={task: {"queue": queue} for task, queue in TASK_QUEUES.items()},
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Long jobs: take one at a time and acknowledge only when done, so a worker that dies
        # mid-job leaves the job to be redelivered instead of lost.
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        broker_connection_retry_on_startup=True,
        # Keys of this deployment's broker live under its prefix like every other key.
        broker_transport_options={"global_keyprefix": settings.redis_key_prefix},
        result_backend_transport_options={"global_keyprefix": settings.redis_key_prefix},
        result_expires=7 * 24 * 3600,
    )
    # An unacknowledged job (its worker died) is delivered again after this many seconds.
    app.conf.broker_transport_options["visibility_timeout"] = settings.celery_visibility_timeout
    return app


def run_worker(app: Celery, queues: list[str], name: str, loglevel: str = "INFO") -> None:
    """Start a Celery worker in this process: one job at a time (``solo`` pool), because
    jobs use every core themselves (and a prefork child could not start processes)."""
    import socket

    # Celery would replace the root logger's handlers (ours: stderr and the daily file).
    app.conf.worker_hijack_root_logger = False
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--pool",
            "solo",
            "--hostname",
            f"{name}@{socket.gethostname()}",
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )


def worker_main(
    service: str,
    queues: list[str],
    argv: Sequence[str] | None = None,
    *,
    description: str | None = None,
    prog: str | None = None,
) -> None:
    """``python -m services.<service>``: a Celery worker of ``service`` on ``queues``, serving the
    tasks registered on the ``app`` of ``services.<service>.tasks``.

    ``--log-level`` defaults to LOG_LEVEL. Logging is set up before the tasks module is imported,
    so the import's own log lines have the service's format.
    """
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m services.{service}", description=description
    )
    parser.add_argument(
        "--log-level", default=CommonSettings().log_level, help="default: LOG_LEVEL or INFO"
    )
    args = parser.parse_args(argv)
    configure_logging(service, args.log_level)
    app = importlib.import_module(f"services.{service}.tasks").app
    run_worker(app, queues, service, args.log_level)
