"""Celery side of the trainer: ``train.run_job`` on queue ``train`` (or ``train-gpu-N``).

The task is a thin wrapper around ``run_job``, a plain function the tests call directly.

Delivery: tasks are acknowledged late and rejected when their worker is lost, so a job whose
worker dies is delivered again (after the broker's visibility timeout) and resumes from its last
checkpoint. A lease on the job record keeps a re-delivered copy from running next to a live one:
the running task renews it every few seconds; a copy that finds a live lease held by someone else
leaves the job alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from shared.celery_app import TRAIN_JOB_TASK, make_celery, train_queue
from shared.datasets import DATASET_KIND
from shared.job_records import EventLog, RecordStore
from shared.merging import MERGE_KIND, MergeRequest, queue_merge
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings
from shared.training import JOB_KIND, TERMINAL_JOB_STATUSES, FineTuneRequest

log = logging.getLogger(__name__)

app = make_celery("trainer")

LEASE_SECONDS = float(os.environ.get("TRAINER_LEASE_SECONDS", "30"))
CANCEL_POLL_SECONDS = 1.0


class JobContext:
    """The stores a job run needs."""

    def __init__(self, common: CommonSettings, celery_app: Any = None) -> None:
        client = sync_redis(common.redis_url)
        keys = RedisKeys(common.redis_key_prefix)
        self.jobs = RecordStore(client, keys, JOB_KIND)
        self.events = EventLog(client, keys, JOB_KIND)
        self.datasets = RecordStore(client, keys, DATASET_KIND)
        self.merges = RecordStore(client, keys, MERGE_KIND)
        # Sends the merge of a ``merge: true`` job to the merger service.
        self.celery = celery_app if celery_app is not None else app


def resolve_file(ctx: JobContext, name: str | None) -> str | None:
    """A dataset id becomes its built ``dataset.jsonl``; a path stays a path."""
    if name is None or not name.startswith("ds-"):
        return name
    dataset = ctx.datasets.get(name)
    if dataset is None or dataset["status"] != "succeeded":
        raise FileNotFoundError(f"dataset {name} is not available")
    return str(Path(dataset["path"]) / "dataset.jsonl")


class Lease:
    """Holds the job for this worker while it runs; renewed from a background thread."""

    def __init__(self, ctx: JobContext, job_id: str, owner: str) -> None:
        self._ctx, self._id, self.owner = ctx, job_id, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name="job-lease")

    def claim(self, record: dict[str, Any]) -> bool:
        holder, expires = record.get("lease_owner"), record.get("lease_expires_at") or 0
        if holder and holder != self.owner and expires > time.time():
            return False
        self._ctx.jobs.update(
            self._id, lease_owner=self.owner, lease_expires_at=time.time() + LEASE_SECONDS
        )
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            self._ctx.jobs.update(self._id, lease_expires_at=time.time() + LEASE_SECONDS)

    def release(self) -> None:
        self._stop.set()
        self._ctx.jobs.update(self._id, lease_owner=None, lease_expires_at=None)


class EventSink:
    """Turns trainer events into job events, metrics on the record, and checkpoints."""

    def __init__(self, ctx: JobContext, job_id: str) -> None:
        self._ctx, self._id = ctx, job_id
        self.checkpoints: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "metrics":
            data = event.get("data", {})
            self._ctx.events.append(
                self._id,
                {
                    "object": "fine_tuning.job.event",
                    "level": "info",
                    "type": "metrics",
                    "message": f"Step {data.get('step')}: training loss={data.get('loss')}",
                    "data": data,
                },
            )
            if (eta := data.get("eta_s")) is not None:
                self._ctx.jobs.update(self._id, estimated_finish=int(time.time() + eta))
        elif kind == "checkpoint":
            checkpoint = {
                "id": f"ftckpt-{uuid.uuid4().hex[:16]}",
                "object": "fine_tuning.job.checkpoint",
                "created_at": int(time.time()),
                "fine_tuned_model_checkpoint": event.get("path"),
                "fine_tuning_job_id": self._id,
                "step_number": event.get("step"),
                "metrics": event.get("metrics", {}),
            }
            record = self._ctx.jobs.get(self._id) or {}
            self._ctx.jobs.update(
                self._id, checkpoints=[*record.get("checkpoints", []), checkpoint]
            )
            self.message(f"Checkpoint saved at step {event.get('step')}")
        else:
            self.message(event.get("message", ""), event.get("level", "info"))

    def message(self, text: str, level: str = "info") -> None:
        self._ctx.events.append(
            self._id,
            {
                "object": "fine_tuning.job.event",
                "level": level,
                "type": "message",
                "message": text,
                "data": None,
            },
        )


def _cancel_checker(ctx: JobContext, job_id: str) -> Any:
    last = {"at": 0.0, "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["at"] >= CANCEL_POLL_SECONDS:
            last["at"] = now
            record = ctx.jobs.get(job_id) or {}
            last["stop"] = bool(record.get("cancel_requested"))
        return last["stop"]

    return should_stop


def fine_tuned_model_name(record: dict[str, Any]) -> str:
    base = Path(record["model"].rstrip("/")).name
    return f"{base}-{record.get('suffix') or record['id']}"


def _train(
    request: FineTuneRequest, output_dir: Path, sink: EventSink, should_stop: Any
) -> dict[str, Any]:
    """In this process on CPU or one GPU; over the node's GPUs with accelerate otherwise."""
    import torch

    from services.trainer import job, launcher

    processes = launcher.launch_processes(request, torch.cuda.device_count())
    if processes > 1:
        return launcher.run_launched(
            request, output_dir, sink, should_stop, processes, torch.cuda.is_available()
        )
    return job.run_training(request, output_dir, sink, should_stop)


def run_job(job_id: str, ctx: JobContext, owner: str) -> dict[str, Any] | None:
    from services.trainer.job import TrainingError

    record = ctx.jobs.get(job_id)
    if record is None:
        log.error("event=job_missing id=%s", job_id)
        return None
    if record["status"] in TERMINAL_JOB_STATUSES or record.get("merge_id"):
        return record  # done, or trained and in the merger's hands
    sink = EventSink(ctx, job_id)
    if record.get("cancel_requested"):
        sink.message("Job cancelled before it started.")
        return ctx.jobs.update(job_id, status="cancelled", finished_at=int(time.time()))
    lease = Lease(ctx, job_id, owner)
    if not lease.claim(record):
        log.info("event=job_already_running id=%s holder=%s", job_id, record.get("lease_owner"))
        return record
    resumed = record["status"] == "running"
    try:
        request = FineTuneRequest.model_validate(record["request"])
        request = request.model_copy(
            update={
                "training_file": resolve_file(ctx, request.training_file),
                "validation_file": resolve_file(ctx, request.validation_file),
            }
        )
        ctx.jobs.update(
            job_id, status="running", started_at=record.get("started_at") or int(time.time())
        )
        sink.message(
            "Job resumed on a new worker after the previous one stopped."
            if resumed
            else f"Fine-tuning job started on {owner}."
        )
        result = _train(request, Path(record["output_dir"]), sink, _cancel_checker(ctx, job_id))
    except (TrainingError, FileNotFoundError, ValueError) as exc:
        sink.message(str(exc), "error")
        lease.release()
        return ctx.jobs.update(
            job_id,
            status="failed",
            finished_at=int(time.time()),
            error={"code": "training_failed", "message": str(exc), "param": None},
        )
    except Exception as exc:
        log.exception("event=job_crashed id=%s", job_id)
        sink.message(f"{type(exc).__name__}: {exc}", "error")
        lease.release()
        return ctx.jobs.update(
            job_id,
            status="failed",
            finished_at=int(time.time()),
            error={
                "code": "internal_error",
                "message": f"{type(exc).__name__}: {exc}",
                "param": None,
            },
        )
    lease.release()
    if result.get("status") == "cancelled":
        sink.message("Job cancelled.")
        return ctx.jobs.update(job_id, status="cancelled", finished_at=int(time.time()))
    outcome = {
        "result_dir": result.get("final_dir"),
        "trained_tokens": result.get("trained_tokens"),
        "result_metrics": result.get("metrics"),
    }
    if request.merge and request.method != "full":
        return _chain_merge(ctx, sink, record, request, outcome)
    if request.merge:
        sink.message("merge: true has nothing to do for a full finetune: the result is a model.")
    sink.message("The job has successfully completed.")
    return ctx.jobs.update(
        job_id,
        status="succeeded",
        finished_at=int(time.time()),
        fine_tuned_model=fine_tuned_model_name(record),
        **outcome,
    )


def _chain_merge(
    ctx: JobContext,
    sink: EventSink,
    record: dict[str, Any],
    request: FineTuneRequest,
    outcome: dict[str, Any],
) -> dict[str, Any] | None:
    """Hand the adapter to the merger; the job stays running until the merge finishes, and the
    merger then marks it succeeded with ``fine_tuned_model`` naming the merged model."""
    merge = queue_merge(
        ctx.celery,
        ctx.merges,
        # Named after the job (``<base>-<suffix or id>``, made a valid model name).
        MergeRequest(base_model=request.model, adapter=outcome["result_dir"], job_id=record["id"]),
        jobs=ctx.jobs,
    )
    sink.message(f"Training finished; merging the adapter into the base model ({merge['id']}).")
    return ctx.jobs.update(record["id"], merge_id=merge["id"], **outcome)


def recover_orphaned_jobs(ctx: JobContext, grace_seconds: float = LEASE_SECONDS) -> list[str]:
    """Queue again the running jobs whose lease has expired; returns their ids.

    Celery redelivers a job whose worker died, but only once per message: if a job outlived the
    visibility timeout, its redelivered copy saw the live lease and exited, and if the original
    worker then dies no message is left. A lease that stopped being renewed means exactly that;
    sending the task again is safe because the lease still keeps a single runner.
    """
    records, _ = ctx.jobs.list(limit=10_000)
    now = time.time()
    orphans = [
        job
        for job in records
        if job["status"] == "running"
        and not job.get("merge_id")
        and (job.get("lease_expires_at") or 0) + grace_seconds < now
    ]
    for job in orphans:
        request = FineTuneRequest.model_validate(job["request"])
        ctx.celery.send_task(TRAIN_JOB_TASK, args=[job["id"]], queue=train_queue(request.gpus))
        EventSink(ctx, job["id"]).message(
            "The worker running this job stopped renewing its lease; the job was queued again "
            "and resumes from its last checkpoint."
        )
        log.warning(
            "event=job_requeued id=%s lease_expired_at=%s", job["id"], job.get("lease_expires_at")
        )
    return [job["id"] for job in orphans]


def watch_for_orphaned_jobs(common: CommonSettings, interval: float = 60.0) -> threading.Thread:
    """Run ``recover_orphaned_jobs`` now and every ``interval`` seconds, in a daemon thread."""

    def loop() -> None:
        ctx = JobContext(common)
        while True:
            try:
                recover_orphaned_jobs(ctx)
            except Exception:  # Redis away for a moment: look again later
                log.exception("event=orphan_scan_failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, daemon=True, name="orphaned-jobs")
    thread.start()
    return thread


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name=TRAIN_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
def run_job_task(job_id: str) -> str:
    record = run_job(job_id, JobContext(CommonSettings()), worker_identity())
    return record["status"] if record else "missing"
