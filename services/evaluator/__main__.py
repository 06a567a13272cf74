"""Start an evaluator worker: ``python -m services.evaluator`` (consumes queue ``eval``).

For an evaluation without the queue see ``python -m services.evaluator.run``.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.celery_app import EVAL_QUEUE, worker_main


def main(argv: Sequence[str] | None = None) -> None:
    worker_main("evaluator", [EVAL_QUEUE], argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
