"""Celery side of the ingestor: the ``ingest.build_dataset`` task on queue ``ingest``.

The task is a thin wrapper around ``build_dataset``, a plain function the tests call directly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from services.ingestor.pipeline import IngestError, IngestSpec, run_pipeline
from shared.celery_app import BUILD_DATASET_TASK, make_celery
from shared.datasets import DATASET_KIND, TERMINAL_STATUSES, DatasetSpec
from shared.job_records import RecordStore
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings, default_model_dir

log = logging.getLogger(__name__)

app = make_celery("ingestor")


class Cancelled(Exception):
    """Raised from the progress callback when a cancel was requested."""


class ProgressReporter:
    """Writes stage progress to the record, at most every ``interval`` seconds per stage, and
    stops the build when someone asked to cancel it."""

    def __init__(self, store: RecordStore, dataset_id: str, interval: float = 0.5) -> None:
        self._store = store
        self._id = dataset_id
        self._interval = interval
        self._progress: dict[str, dict[str, Any]] = {}
        self._last_write = 0.0
        self._last_stage: str | None = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self._progress[stage] = {"done": done, "total": total}
        now = time.monotonic()
        finished = total is not None and done >= total
        if stage == self._last_stage and not finished and now - self._last_write < self._interval:
            return
        self._last_stage, self._last_write = stage, now
        record = self._store.update(self._id, progress=self._progress)
        if record is not None and record.get("cancel_requested"):
            raise Cancelled()


def build_dataset(dataset_id: str, store: RecordStore) -> dict[str, Any] | None:
    """Run one dataset build recorded under ``dataset_id``; the record tells how it ended."""
    record = store.get(dataset_id)
    if record is None:
        log.error("event=dataset_missing id=%s", dataset_id)
        return None
    if record["status"] in TERMINAL_STATUSES:
        return record  # a redelivered task for a finished build
    if record.get("cancel_requested"):
        return store.update(dataset_id, status="cancelled", finished_at=int(time.time()))
    store.update(dataset_id, status="running", started_at=int(time.time()))
    spec = DatasetSpec.model_validate(record["spec"])
    ingest = IngestSpec(
        sources=spec.sources,
        tokenizer_path=spec.tokenizer or str(default_model_dir()),
        max_length=spec.max_length,
        keep_lang=spec.keep_lang,
        skip_lang=spec.skip_lang,
        reduce_rep=spec.reduce_rep,
        seed=spec.seed,
    )
    log.info("event=dataset_build_started id=%s sources=%s", dataset_id, spec.sources)
    try:
        manifest = run_pipeline(ingest, Path(record["path"]), ProgressReporter(store, dataset_id))
    except Cancelled:
        log.info("event=dataset_build_cancelled id=%s", dataset_id)
        return store.update(dataset_id, status="cancelled", finished_at=int(time.time()))
    except (ValueError, IngestError) as exc:
        log.warning("event=dataset_build_rejected id=%s error=%s", dataset_id, exc)
        return store.update(
            dataset_id,
            status="failed",
            error={
                "message": str(exc),
                "param": "sources" if isinstance(exc, ValueError) else None,
            },
            finished_at=int(time.time()),
        )
    except Exception as exc:
        log.exception("event=dataset_build_failed id=%s", dataset_id)
        return store.update(
            dataset_id,
            status="failed",
            error={"message": f"{type(exc).__name__}: {exc}", "param": None},
            finished_at=int(time.time()),
        )
    log.info("event=dataset_build_succeeded id=%s", dataset_id)
    return store.update(
        dataset_id, status="succeeded", manifest=manifest, finished_at=int(time.time())
    )


def dataset_store(common: CommonSettings | None = None) -> RecordStore:
    common = common or CommonSettings()
    return RecordStore(
        sync_redis(common.redis_url), RedisKeys(common.redis_key_prefix), DATASET_KIND
    )


@app.task(name=BUILD_DATASET_TASK)
def build_dataset_task(dataset_id: str) -> str:
    record = build_dataset(dataset_id, dataset_store())
    return record["status"] if record else "missing"
