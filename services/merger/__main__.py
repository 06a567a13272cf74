"""Start a merger worker: ``python -m services.merger`` consumes the Celery queue ``merge``.

For merging without the queue see ``python -m services.merger.apply_lora``.
"""

from __future__ import annotations

import argparse

from shared.celery_app import MERGE_QUEUE, run_worker
from shared.logging_setup import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging("merger", args.log_level)

    from services.merger.tasks import app

    run_worker(app, [MERGE_QUEUE], "merger", args.log_level)


if __name__ == "__main__":
    main()
