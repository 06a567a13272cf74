"""Start a trainer worker: ``python -m services.trainer [--gpus N]``.

It consumes queue ``train`` and, on a node with N GPUs, ``train-gpu-1`` ... ``train-gpu-N``
(jobs that need that many GPUs). For training without the queue see
``python -m services.trainer.train``.
"""

from __future__ import annotations

import argparse

from shared.celery_app import run_worker, train_queue
from shared.logging_setup import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=None, help="default: the GPUs torch sees")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--orphan-scan-interval",
        type=float,
        default=60.0,
        help="seconds between looks for running jobs whose worker is gone",
    )
    args = parser.parse_args(argv)
    configure_logging("trainer", args.log_level)
    gpus = args.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    queues = [train_queue(n) for n in range(gpus + 1)]

    from services.trainer.tasks import app, watch_for_orphaned_jobs
    from shared.settings import CommonSettings

    watch_for_orphaned_jobs(CommonSettings(), args.orphan_scan_interval)
    run_worker(app, queues, "trainer", args.log_level)


if __name__ == "__main__":
    main()
