"""Start a merger worker: ``python -m services.merger`` consumes the Celery queue ``merge``.

For merging without the queue see ``python -m services.merger.apply_lora``.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.celery_app import MERGE_QUEUE, worker_main


def main(argv: Sequence[str] | None = None) -> None:
    worker_main("merger", [MERGE_QUEUE], argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
