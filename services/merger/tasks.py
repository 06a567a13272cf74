"""Celery side of the merger: ``merge.run`` on queue ``merge``.

The task is a thin wrapper around ``run_merge``, a plain function the tests call directly. It
moves the merge record queued -> running -> succeeded | failed | cancelled and, for a merge that
finishes a fine-tuning job (``job_id``), finishes that job too: the job succeeds once its merged
model is published, under the merged model's name.

Delivery is late-acknowledged like the trainer's: a merge whose worker dies is delivered again
and starts over (the half-written folder of the dead run is never published). A lease on the
record keeps a copy delivered while the first still runs from merging next to it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.merger.errors import MergeCancelled, MergeError
from shared.celery_app import MERGE_TASK, make_celery
from shared.job_records import EventLog, RecordStore
from shared.merging import JOB_ID_PREFIX, MERGE_KIND, TERMINAL_MERGE_STATUSES
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings, MergerSettings
from shared.training import JOB_KIND

log = logging.getLogger(__name__)

app = make_celery("merger")


class MergeContext:
    """The stores a merge run needs, and where merged models go."""

    def __init__(self, common: CommonSettings, settings: MergerSettings | None = None) -> None:
        client = sync_redis(common.redis_url)
        keys = RedisKeys(common.redis_key_prefix)
        self.merges = RecordStore(client, keys, MERGE_KIND)
        self.jobs = RecordStore(client, keys, JOB_KIND)
        self.job_events = EventLog(client, keys, JOB_KIND)
        self.models_dir = Path(common.models_dir)
        self.settings = settings or MergerSettings()


class Lease:
    """Holds the merge for this worker while it runs; renewed from a background thread."""

    def __init__(self, ctx: MergeContext, merge_id: str, owner: str) -> None:
        self._ctx, self._id, self.owner = ctx, merge_id, owner
        self._seconds = ctx.settings.lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name="merge-lease")

    def claim(self) -> dict[str, Any] | None:
        """Mark the merge running for this owner; None if another live worker holds it."""

        def free(record: dict[str, Any]) -> bool:
            if record["status"] in TERMINAL_MERGE_STATUSES:
                return False
            holder = record.get("lease_owner")
            expires = record.get("lease_expires_at") or 0
            return not holder or holder == self.owner or expires <= time.time()

        now = time.time()
        claimed = self._ctx.merges.update_if(
            self._id,
            free,
            status="running",
            started_at=int(now),
            lease_owner=self.owner,
            lease_expires_at=now + self._seconds,
        )
        if claimed is not None:
            self._thread.start()
        return claimed

    def _renew(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            self._ctx.merges.update(self._id, lease_expires_at=time.time() + self._seconds)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._ctx.merges.update(self._id, lease_owner=None, lease_expires_at=None)


class JobNotifier:
    """Tells the fine-tuning job a merge finishes (if any) what happened, as job events."""

    def __init__(self, ctx: MergeContext, job_id: str | None) -> None:
        self._ctx, self._id = ctx, job_id

    def message(self, text: str, level: str = "info") -> None:
        if self._id is None:
            return
        self._ctx.job_events.append(
            self._id,
            {
                "object": "fine_tuning.job.event",
                "level": level,
                "type": "message",
                "message": text,
                "data": None,
            },
        )

    def update(self, **fields: Any) -> None:
        if self._id is not None and self._ctx.jobs.update(self._id, **fields) is None:
            log.warning("event=merge_job_missing job=%s", self._id)


def _cancel_checker(ctx: MergeContext, merge_id: str) -> Callable[[], bool]:
    last = {"at": 0.0, "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["at"] >= ctx.settings.cancel_poll_seconds:
            last["at"] = now
            last["stop"] = bool((ctx.merges.get(merge_id) or {}).get("cancel_requested"))
        return last["stop"]

    return should_stop


def resolve_adapter(ctx: MergeContext, adapter: str) -> str:
    """A fine-tuning job id becomes the folder its result is in; a path stays a path."""
    if not adapter.startswith(JOB_ID_PREFIX):
        return adapter
    job_id = adapter
    job = ctx.jobs.get(job_id)
    if job is None:
        raise MergeError(f"fine-tuning job {job_id} not found")
    if not job.get("result_dir"):
        raise MergeError(f"fine-tuning job {job_id} has no result yet (status {job['status']})")
    return str(job["result_dir"])


def run_merge(merge_id: str, ctx: MergeContext, owner: str) -> dict[str, Any] | None:
    from services.merger.merge import MergeOptions, merge_lora, published_result

    record = ctx.merges.get(merge_id)
    if record is None:
        log.error("event=merge_missing id=%s", merge_id)
        return None
    if record["status"] in TERMINAL_MERGE_STATUSES:
        return record
    job = JobNotifier(ctx, record.get("job_id"))
    if record.get("cancel_requested"):
        return _cancelled(ctx, merge_id, job)
    lease = Lease(ctx, merge_id, owner)
    if lease.claim() is None:
        log.info("event=merge_already_running id=%s holder=%s", merge_id, record.get("lease_owner"))
        return record
    target = ctx.models_dir / record["name"]
    if record["status"] == "running" and (done := published_result(target, merge_id)):
        lease.release()  # the previous worker published, then died before reporting
        return _succeeded(ctx, merge_id, job, record["name"], {**done, "duration_s": None})
    log.info("event=merge_started id=%s name=%s owner=%s", merge_id, record["name"], owner)
    job.message(f"Merging the adapter into {record['base_model']} as model {record['name']}.")

    def on_progress(event: dict[str, Any]) -> None:
        log.info("event=merge_progress id=%s phase=%s", merge_id, event["phase"])
        ctx.merges.update(merge_id, progress=event)

    try:
        adapter = resolve_adapter(ctx, record["adapter"])
        ctx.merges.update(merge_id, adapter_dir=adapter)
        options = MergeOptions(
            dtype=record["dtype"],
            overwrite=record["overwrite"],
            max_shard_size=record["max_shard_size"],
            merge_id=merge_id,
        )
        result = merge_lora(
            record["base_model"],
            adapter,
            target,
            options,
            on_progress,
            _cancel_checker(ctx, merge_id),
        )
    except MergeCancelled:
        lease.release()
        return _cancelled(ctx, merge_id, job)
    except MergeError as exc:
        lease.release()
        return _failed(ctx, merge_id, job, "merge_failed", exc.message)
    except Exception as exc:
        log.exception("event=merge_crashed id=%s", merge_id)
        lease.release()
        return _failed(ctx, merge_id, job, "internal_error", f"{type(exc).__name__}: {exc}")
    lease.release()
    return _succeeded(ctx, merge_id, job, record["name"], result)


def _succeeded(
    ctx: MergeContext, merge_id: str, job: JobNotifier, name: str, result: dict[str, Any]
) -> dict[str, Any] | None:
    now = int(time.time())
    error = result["verification"]["relative_error"]
    output = result["output_dir"]
    log.info("event=merge_succeeded id=%s output=%s relative_error=%.3g", merge_id, output, error)
    job.update(status="succeeded", fine_tuned_model=name, merged_model_dir=output, finished_at=now)
    job.message(
        f"Merged model {name} published in {output} (verified: relative logit error {error:.3g})."
    )
    job.message("The job has successfully completed.")
    return ctx.merges.update(
        merge_id,
        status="succeeded",
        output_dir=result["output_dir"],
        dtype_used=result["dtype"],
        verification=result["verification"],
        duration_s=result["duration_s"],
        finished_at=now,
    )


def _failed(
    ctx: MergeContext, merge_id: str, job: JobNotifier, code: str, message: str
) -> dict[str, Any] | None:
    log.warning("event=merge_failed id=%s code=%s message=%r", merge_id, code, message)
    now = int(time.time())
    job.message(f"Merge failed: {message}", "error")
    job.update(
        status="failed",
        finished_at=now,
        error={"code": code, "message": f"merge failed: {message}", "param": None},
    )
    return ctx.merges.update(
        merge_id, status="failed", finished_at=now, error={"code": code, "message": message}
    )


def _cancelled(ctx: MergeContext, merge_id: str, job: JobNotifier) -> dict[str, Any] | None:
    now = int(time.time())
    job.message("Merge cancelled; the adapter is kept in the job's result folder.")
    job.update(status="cancelled", finished_at=now)
    return ctx.merges.update(merge_id, status="cancelled", finished_at=now)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name=MERGE_TASK, acks_late=True, reject_on_worker_lost=True)
def run_merge_task(merge_id: str) -> str:
    record = run_merge(merge_id, MergeContext(CommonSettings()), worker_identity())
    return record["status"] if record else "missing"
