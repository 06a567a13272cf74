"""Celery side of the merger: ``merge.run`` on queue ``merge``.

The task is a thin wrapper around ``run_merge``, a plain function the tests call directly; the
claim, lease, cancel and redelivery rules are the shared job runner's (``shared/jobs``). A merge
taken over from a runner that died starts over, unless that runner had already published the
model (then it is reported, not merged again): the half-written folder of a dead run is never
published.

A merge that finishes a fine-tuning job (the trainer's ``merge: true``) finishes that job too:
the job succeeds once its merged model is published, under the merged model's name. Only the
merge the job itself handed its adapter to (the job's ``merge_id``) may change the job.

Whoever wrote the record, a merge reads its base and adapter only under the allowed folders
(``shared/paths.py``), publishes only ``MODELS_DIR/<name>``, never replaces the default model, and
replaces a published one only where MODELS_ALLOW_OVERWRITE allows it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from services.merger.errors import MergeCancelled, MergeError
from shared import pipeline
from shared.celery_app import MERGE_QUEUE, MERGE_TASK, make_celery
from shared.jobs import (
    TERMINAL_STATUSES,
    Finished,
    JobCancelled,
    JobFailed,
    JobRun,
    runner_identity,
)
from shared.jobs.service import runner_for, watch_orphans_when_ready
from shared.merging import JOB_ID_PREFIX, MODEL_NAME_PATTERN
from shared.paths import (
    ADAPTER_FOLDER,
    AllowedRoots,
    RefusedReference,
    check_loadable,
    model_folder,
)
from shared.settings import DEFAULT_MODEL_NAME, CommonSettings
from shared.stores import Stores

log = logging.getLogger(__name__)

app = make_celery("merger")


class MergeContext:
    """The stores a merge run needs, and where merged models go."""

    def __init__(self, common: CommonSettings) -> None:
        self.common = common
        stores = Stores.connect(common)
        self.merges = stores.merges
        self.jobs = stores.jobs
        self.job_events = stores.job_events
        self.deployments = stores.deployments
        self.models_dir = Path(common.models_dir)
        self.roots = AllowedRoots.of(common)


class JobNotifier:
    """Tells the fine-tuning job a merge finishes what happened (events and its status), if the
    job handed its adapter to this very merge."""

    def __init__(self, ctx: MergeContext, merge: dict[str, Any]) -> None:
        self._ctx, self._merge_id = ctx, merge["id"]
        job = ctx.jobs.get(merge["job_id"]) if merge.get("job_id") else None
        self._id = job["id"] if job and job.get("merge_id") == merge["id"] else None

    def message(self, text: str, level: str = "info") -> None:
        if self._id is not None:
            pipeline.stage_event(self._ctx.job_events, self._id, "merge", text, level)

    def stage(self, **fields: Any) -> None:
        """The job's merge stage (jobs created with ``sources`` or ``deploy``)."""
        if self._id is not None:
            pipeline.set_stage(self._ctx.jobs, self._id, "merge", **fields)

    def _to_deploy(self, merge: dict[str, Any]) -> bool:
        """A job that deploys goes on to its deploy stage with the published model."""
        job = self._ctx.jobs.get(self._id) if self._id is not None else None
        if job is None or not pipeline.has_stage(job, "deploy"):
            return False
        holder, fields = pipeline.deploy_handoff(merge["name"], merge["output_dir"])
        self.update(handed_off_to=holder, merged_model_dir=merge["output_dir"], **fields)
        self.stage(status="succeeded")
        stores = self._ctx
        pipeline.create_deployment(stores.jobs, stores.deployments, stores.job_events, job["id"])
        return True

    def update(self, **fields: Any) -> None:
        def owned(job: dict[str, Any]) -> bool:
            return job.get("merge_id") == self._merge_id and job["status"] not in TERMINAL_STATUSES

        if self._id is not None and self._ctx.jobs.update_if(self._id, owned, **fields) is None:
            log.warning("event=merge_job_not_updated job=%s merge=%s", self._id, self._merge_id)

    def finished(self, merge: dict[str, Any]) -> None:
        """The runner's terminal hook: the job ends the way its merge ended."""
        now = int(time.time())
        status = merge["status"]
        if status == "succeeded":
            output = merge["output_dir"]
            error = merge["verification"]["relative_error"]
            self.message(
                f"Merged model {merge['name']} published in {output} "
                f"(verified: relative logit error {error:.3g})."
            )
            if self._to_deploy(merge):
                return
            self.stage(status="succeeded")
            self.message("The job has successfully completed.")
            self.update(
                status="succeeded",
                fine_tuned_model=merge["name"],
                merged_model_dir=output,
                finished_at=now,
            )
        elif status == "failed":
            message = merge["error"]["message"]
            self.message(f"Merge failed: {message}", "error")
            error = {"code": merge["error"]["code"], "message": f"merge failed: {message}"}
            self.update(status="failed", finished_at=now, error={**error, "param": None})
            self.stage(status="failed")
        else:
            self.message("Merge cancelled; the adapter is kept in the job's result folder.")
            self.update(status="cancelled", finished_at=now)
            self.stage(status="cancelled")


def resolve_adapter(ctx: MergeContext, adapter: str) -> str:
    """A fine-tuning job id becomes the folder its result is in; either way the adapter must be
    a folder under the allowed folders holding one."""
    if adapter.startswith(JOB_ID_PREFIX):
        job = ctx.jobs.get(adapter)
        if job is None:
            raise MergeError(f"fine-tuning job {adapter} not found")
        if not job.get("result_dir"):
            raise MergeError(
                f"fine-tuning job {adapter} has no result yet (status {job['status']})"
            )
        adapter = str(job["result_dir"])
    try:
        return str(model_folder(adapter, ctx.roots, ADAPTER_FOLDER))
    except RefusedReference as exc:
        raise MergeError(f"adapter: {exc}") from None


def checked_inputs(ctx: MergeContext, record: dict[str, Any]) -> tuple[str, Path]:
    """The base model to load (a Hub id or a folder under the allowed folders) and the folder to
    publish: ``MODELS_DIR/<name>``, never the default model, replacing a published model only
    where the deployment allows it. Whoever wrote the record."""
    name = str(record.get("name"))
    if not MODEL_NAME_PATTERN.match(name):
        raise MergeError(f"name: {name!r} is not a valid model name")
    if name == DEFAULT_MODEL_NAME:
        raise MergeError(f"name: {name!r} is the default model, which a merge never replaces")
    if record.get("overwrite") and not ctx.common.models_allow_overwrite:
        raise MergeError(
            "overwrite: replacing a published model is turned off (MODELS_ALLOW_OVERWRITE)"
        )
    try:
        base = check_loadable(str(record.get("base_model")), ctx.roots)
    except RefusedReference as exc:
        raise MergeError(f"base_model: {exc}") from None
    return base, ctx.models_dir / name


def _result_fields(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "output_dir": result["output_dir"],
        "dtype_used": result.get("dtype"),
        "verification": result["verification"],
        "duration_s": result.get("duration_s"),
    }


def merge_job(run: JobRun, ctx: MergeContext, job: JobNotifier) -> Finished:
    """The merger's work: fold the adapter into the base and publish ``MODELS_DIR/<name>``."""
    from services.merger.merge import MergeOptions, merge_lora, published_result

    record = run.record
    try:
        base, target = checked_inputs(ctx, record)
    except MergeError as exc:
        raise JobFailed(exc.message, "invalid_merge") from exc
    if run.resumed and (done := published_result(target, run.id)):
        # The previous runner published, then died before reporting.
        return Finished(_result_fields({**done, "duration_s": None}))
    job.message(f"Merging the adapter into {record['base_model']} as model {record['name']}.")
    job.stage(status="running", id=run.id)

    def on_progress(event: dict[str, Any]) -> None:
        log.info("event=merge_progress id=%s phase=%s", run.id, event["phase"])
        run.update(progress=event)
        job.stage(progress=event)

    try:
        adapter = resolve_adapter(ctx, record["adapter"])
        run.update(adapter_dir=adapter)
        options = MergeOptions(
            dtype=record["dtype"],
            overwrite=record["overwrite"],
            max_shard_size=record["max_shard_size"],
            merge_id=run.id,
        )
        result = merge_lora(base, adapter, target, options, on_progress, run.should_stop)
    except MergeCancelled as exc:
        raise JobCancelled from exc
    except MergeError as exc:
        raise JobFailed(exc.message, "merge_failed") from exc
    error = result["verification"]["relative_error"]
    log.info("event=merge_published id=%s output=%s relative_error=%.3g", run.id, target, error)
    return Finished(_result_fields(result))


def run_merge(merge_id: str, ctx: MergeContext, owner: str) -> dict[str, Any] | None:
    record = ctx.merges.get(merge_id)
    if record is None:
        log.error("event=merge_missing id=%s", merge_id)
        return None
    job = JobNotifier(ctx, record)
    runner = runner_for(ctx.merges, owner, ctx.common, on_terminal=job.finished, label="Merge")
    return runner.run(merge_id, lambda run: merge_job(run, ctx, job))


watch_orphans_when_ready(app, lambda stores: stores.merges, MERGE_TASK, MERGE_QUEUE)


@app.task(name=MERGE_TASK, acks_late=True, reject_on_worker_lost=True)
def run_merge_task(merge_id: str) -> str:
    record = run_merge(merge_id, MergeContext(CommonSettings()), runner_identity("merger"))
    return record["status"] if record else "missing"
