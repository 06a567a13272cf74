"""Celery side of the trainer: ``train.run_job`` on queue ``train`` (or ``train-gpu-N``).

The task is a thin wrapper around ``run_job``, a plain function the tests call directly; the
claim, lease, cancel and redelivery rules are the shared job runner's (``shared/jobs``). A job
taken over from a runner that died resumes from its newest complete checkpoint.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from shared import pipeline
from shared.celery_app import TRAIN_JOB_TASK, make_celery, train_queue
from shared.jobs import Finished, HandedOff, JobCancelled, JobFailed, JobRun, runner_identity
from shared.jobs.service import runner_for, watch_orphans_when_ready
from shared.merging import MergeRequest, record_merge, send_merge
from shared.paths import (
    AllowedRoots,
    RefusedReference,
    check_loadable,
    own_folder,
    resolve_data_file,
)
from shared.settings import CommonSettings
from shared.stores import Stores
from shared.training import FineTuneRequest, job_event

log = logging.getLogger(__name__)

app = make_celery("trainer")


class JobContext:
    """The stores and settings a job run needs."""

    def __init__(self, common: CommonSettings, celery_app: Any = None) -> None:
        self.common = common
        stores = Stores.connect(common)
        self.jobs = stores.jobs
        self.events = stores.job_events
        self.datasets = stores.datasets
        self.merges = stores.merges
        # Sends the merge of a ``merge: true`` job to the merger service.
        self.celery = celery_app if celery_app is not None else app

    def message(self, job_id: str, text: str, level: str = "info") -> None:
        pipeline.stage_event(self.events, job_id, "train", text, level)


def resolve_file(ctx: JobContext, name: str | None) -> str | None:
    """A dataset id becomes its built ``dataset.jsonl``; a path must be a file under the allowed
    folders (``shared/paths.py``), whoever wrote the record."""
    if name is None:
        return None
    return str(resolve_data_file(name, AllowedRoots.of(ctx.common), ctx.datasets))


def checked_request(ctx: JobContext, record: dict[str, Any]) -> FineTuneRequest:
    """The recorded request with its files resolved and its model checked: a Hub id or a folder
    under the allowed folders. JobFailed naming the field otherwise."""
    request = FineTuneRequest.model_validate(record["request"])
    roots = AllowedRoots.of(ctx.common)
    update: dict[str, Any] = {}
    for field in ("model", "training_file", "validation_file"):
        try:
            if field == "model":
                update[field] = check_loadable(request.model, roots)
            else:
                update[field] = resolve_file(ctx, getattr(request, field))
        except RefusedReference as exc:
            raise JobFailed(f"{field}: {exc}", "invalid_file", field) from None
    return request.model_copy(update=update)


def output_folder(ctx: JobContext, record: dict[str, Any]) -> Path:
    """The job's own folder: one folder of JOBS_DIR, whatever the record says."""
    folder = own_folder(record.get("output_dir"), ctx.common.jobs_dir)
    if folder is None:
        message = f"the job's folder {record.get('output_dir')} is not a folder of JOBS_DIR"
        raise JobFailed(message, "invalid_file")
    return folder


class EventSink:
    """Turns trainer events into job events, metrics on the record, and checkpoints."""

    def __init__(self, ctx: JobContext, run: JobRun) -> None:
        self._ctx, self._run = ctx, run

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "metrics":
            self._metrics(event.get("data", {}))
        elif kind == "checkpoint":
            self._checkpoint(event)
        else:
            self._ctx.message(self._run.id, event.get("message", ""), event.get("level", "info"))

    def _metrics(self, data: dict[str, Any]) -> None:
        text = f"Step {data.get('step')}: training loss={data.get('loss')}"
        event = job_event(text, kind="metrics", data=data)
        self._ctx.events.append(self._run.id, {**event, "stage": "train"})
        if (eta := data.get("eta_s")) is not None:
            self._run.update(estimated_finish=int(time.time() + eta))
        if pipeline.has_stage(self._run.record, "train") and "loss" in data:
            progress = {k: data.get(k) for k in ("step", "loss", "epoch", "eta_s")}
            pipeline.set_stage(self._ctx.jobs, self._run.id, "train", progress=progress)

    def _checkpoint(self, event: dict[str, Any]) -> None:
        checkpoint = {
            "id": f"ftckpt-{uuid.uuid4().hex[:16]}",
            "object": "fine_tuning.job.checkpoint",
            "created_at": int(time.time()),
            "fine_tuned_model_checkpoint": event.get("path"),
            "fine_tuning_job_id": self._run.id,
            "step_number": event.get("step"),
            "metrics": event.get("metrics", {}),
        }
        self._ctx.jobs.change(
            self._run.id,
            lambda record: {"checkpoints": [*record.get("checkpoints", []), checkpoint]},
        )
        self._ctx.message(self._run.id, f"Checkpoint saved at step {event.get('step')}")


def fine_tuned_model_name(record: dict[str, Any]) -> str:
    base = Path(record["model"].rstrip("/")).name
    return f"{base}-{record.get('suffix') or record['id']}"


def _train(request: FineTuneRequest, output_dir: Path, sink: EventSink, run: JobRun) -> dict:
    """In this process on CPU or one GPU; over the node's GPUs with accelerate otherwise."""
    import torch

    from services.trainer import job, launcher

    processes = launcher.launch_processes(request, torch.cuda.device_count())
    if processes > 1:
        return launcher.run_launched(
            request, output_dir, sink, run.should_stop, processes, torch.cuda.is_available()
        )
    return job.run_training(request, output_dir, sink, run.should_stop)


def train_job(run: JobRun, ctx: JobContext) -> Finished | HandedOff:
    """The trainer's work: train (resuming from the job's checkpoints), then finish or hand the
    adapter to the merger."""
    from services.trainer.job import TrainingError

    record = run.record
    request = checked_request(ctx, record)
    if pipeline.has_stage(record, "train"):
        pipeline.set_stage(ctx.jobs, run.id, "train", status="running", id=run.id)
    try:
        result = _train(request, output_folder(ctx, record), EventSink(ctx, run), run)
    except (TrainingError, FileNotFoundError, ValueError) as exc:
        raise JobFailed(str(exc), "training_failed") from exc
    if result.get("status") == "cancelled":
        raise JobCancelled
    outcome = {
        "result_dir": result.get("final_dir"),
        "trained_tokens": result.get("trained_tokens"),
        "result_metrics": result.get("metrics"),
    }
    if request.merge and request.method != "full":
        return _hand_to_merger(ctx, record, request, outcome)
    if request.merge:
        ctx.message(
            run.id, "merge: true has nothing to do for a full finetune: the result is a model."
        )
    if pipeline.has_stage(record, "deploy") and outcome["result_dir"]:
        return _hand_to_deploy(ctx, record, outcome)
    ctx.message(run.id, "The job has successfully completed.")
    return Finished({**outcome, "fine_tuned_model": fine_tuned_model_name(record)})


def _hand_to_deploy(ctx: JobContext, record: dict[str, Any], outcome: dict[str, Any]) -> HandedOff:
    """A trained model (a full finetune) goes to the deploy stage: the job succeeds once the
    model pool has it answering a chat."""
    holder, fields = pipeline.deploy_handoff(fine_tuned_model_name(record), outcome["result_dir"])
    pipeline.set_stage(ctx.jobs, record["id"], "train", status="succeeded")
    ctx.message(record["id"], f"Training finished; deploying {fields['fine_tuned_model']}.")
    stores = Stores.connect(ctx.common)

    def start() -> None:
        pipeline.create_deployment(ctx.jobs, stores.deployments, ctx.events, record["id"])

    return HandedOff(holder, {**outcome, **fields}, then=start)


def _hand_to_merger(
    ctx: JobContext, record: dict[str, Any], request: FineTuneRequest, outcome: dict[str, Any]
) -> HandedOff:
    """The job stays running until its merge finishes; the merger then marks it succeeded with
    ``fine_tuned_model`` naming the merged model (``<base>-<suffix or id>``)."""
    merge = record_merge(
        ctx.merges,
        MergeRequest(base_model=request.model, adapter=outcome["result_dir"]),
        jobs=ctx.jobs,
        job_id=record["id"],
    )
    ctx.message(
        record["id"], f"Training finished; merging the adapter into the base model ({merge['id']})."
    )
    if pipeline.has_stage(record, "merge"):
        pipeline.set_stage(ctx.jobs, record["id"], "train", status="succeeded")
        pipeline.set_stage(ctx.jobs, record["id"], "merge", status="queued", id=merge["id"])
    return HandedOff(
        merge["id"],
        {"merge_id": merge["id"], **outcome},
        then=lambda: send_merge(ctx.celery, ctx.merges, merge),
    )


def run_job(job_id: str, ctx: JobContext, owner: str) -> dict[str, Any] | None:
    def close(record: dict[str, Any]) -> None:
        pipeline.close_stage(ctx.jobs, record, "train")

    runner = runner_for(
        ctx.jobs, owner, ctx.common, notify=ctx.message, label="Job", on_terminal=close
    )
    return runner.run(job_id, lambda run: train_job(run, ctx))


def queue_of(record: dict[str, Any]) -> str:
    """The queue of trainers with the GPUs the job needs."""
    return train_queue(FineTuneRequest.model_validate(record["request"]).gpus)


def _job_messages(stores: Stores) -> Any:
    return lambda job_id, text, level: stores.job_events.append(job_id, job_event(text, level))


watch_orphans_when_ready(app, lambda stores: stores.jobs, TRAIN_JOB_TASK, queue_of, _job_messages)


@app.task(name=TRAIN_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
def run_job_task(job_id: str) -> str:
    record = run_job(job_id, JobContext(CommonSettings()), runner_identity("trainer"))
    return record["status"] if record else "missing"
