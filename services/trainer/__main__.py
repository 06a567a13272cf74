"""Start a trainer worker: ``python -m services.trainer [--gpus N]``.

It consumes queue ``train`` and, on a node with N GPUs, ``train-gpu-1`` ... ``train-gpu-N``
(jobs that need that many GPUs). For training without the queue see
``python -m services.trainer.train``.
"""

from __future__ import annotations

from shared.celery_app import run_worker, train_queue
from shared.cli import SettingsParser
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, TrainerSettings
from shared.trainers import announce_capacity_when_ready


def main(argv: list[str] | None = None) -> None:
    cli = SettingsParser(
        __doc__.split("\n\n")[0],
        CommonSettings,
        TrainerSettings,
        aliases={"--orphan-scan-interval": "--job-orphan-scan-seconds"},
        prog="python -m services.trainer",
    )
    cli.parse(argv)
    cli.export(CommonSettings)
    common, settings = cli.settings(CommonSettings), cli.settings(TrainerSettings)
    configure_logging("trainer", common.log_level, common)
    gpus = settings.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    queues = [train_queue(n) for n in range(gpus + 1)]

    from services.trainer.tasks import app

    announce_capacity_when_ready(app, gpus)  # the controller refuses jobs needing more
    run_worker(app, queues, "trainer", common.log_level)


if __name__ == "__main__":
    main()
