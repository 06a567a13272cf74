"""Start an evaluator worker: ``python -m services.evaluator`` (consumes queue ``eval``).

For an evaluation without the queue see ``python -m services.evaluator.run``.
"""

from __future__ import annotations

import argparse

from shared.celery_app import EVAL_QUEUE, run_worker
from shared.logging_setup import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging("evaluator", args.log_level)

    from services.evaluator.tasks import app

    run_worker(app, [EVAL_QUEUE], "evaluator", args.log_level)


if __name__ == "__main__":
    main()
