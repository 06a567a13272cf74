"""``/v1/merges``: merge a LoRA adapter into its base model over the Celery ``merge`` queue.

The controller validates the request against this deployment's files and job records (every bad
field is named), records the merge in Redis and queues ``merge.run``; the merger service updates
the record and publishes the model as ``MODELS_DIR/<name>``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from services.controller.field_errors import Problem, raise_if
from services.controller.records import FINISHED_STATUSES, Backend, CancelOutcome, cancel_record
from services.controller.records_api import RecordAPI, add_record_routes
from shared.job_records import RecordStore
from shared.merging import MergeRequest, default_merge_name, queue_merge
from shared.training import job_event

log = logging.getLogger(__name__)


def _check_base(base_model: str) -> list[Problem]:
    config = Path(base_model).expanduser() / "config.json"
    if not config.is_file():
        return [("base_model", f"{base_model!r} is not a model folder (no config.json)")]
    try:
        quantized = bool(json.loads(config.read_text()).get("quantization_config"))
    except (OSError, ValueError):
        return [("base_model", f"{config} is unreadable")]
    if quantized:
        return [
            (
                "base_model",
                f"{base_model!r} is quantized; merge into the unquantized (16-bit or fp32) base",
            )
        ]
    return []


def _check_adapter(req: MergeRequest, jobs: RecordStore) -> tuple[str | None, dict | None]:
    """What is wrong with ``adapter`` (None if nothing), and the job it names (if any)."""
    job_id = req.adapter_job_id
    if job_id is None:
        if not (Path(req.adapter).expanduser() / "adapter_config.json").is_file():
            return (
                f"{req.adapter!r} is neither a LoRA adapter folder (no adapter_config.json) "
                "nor a fine-tuning job id"
            ), None
        return None, None
    job = jobs.get(job_id)
    if job is None:
        return f"unknown fine-tuning job {job_id!r}", None
    if job["status"] != "succeeded" or not job.get("result_dir"):
        return f"fine-tuning job {job_id} has not finished (status {job['status']})", job
    if not (Path(job["result_dir"]) / "adapter_config.json").is_file():
        return (
            f"fine-tuning job {job_id} trained a full model (method {job.get('method')}); "
            "there is no adapter to merge"
        ), job
    return None, job


def check_request(
    req: MergeRequest, jobs: RecordStore, models_dir: Path
) -> tuple[list[Problem], str]:
    """What a merge needs that only this deployment can tell; returns (problems, model name)."""
    problems = _check_base(req.base_model)
    adapter_problem, job = _check_adapter(req, jobs)
    if adapter_problem is not None:
        problems.append(("adapter", adapter_problem))
    if req.job_id is not None and req.job_id != req.adapter_job_id:
        job = jobs.get(req.job_id)
        if job is None:
            problems.append(("job_id", f"unknown fine-tuning job {req.job_id!r}"))
    name = req.name or default_merge_name(req, job)
    if (models_dir / name).exists() and not req.overwrite:
        derived = "" if req.name else " (derived from the adapter)"
        problems.append(
            ("name", f"a model named {name!r}{derived} already exists; pass overwrite: true")
        )
    return problems, name


def create_merge(backend: Backend, req: MergeRequest) -> dict[str, Any]:
    stores = backend.stores
    problems, name = check_request(req, stores.jobs, Path(backend.common.models_dir))
    raise_if(problems)
    record = queue_merge(backend.celery, stores.merges, req.model_copy(update={"name": name}))
    log.info(
        "event=merge_queued id=%s name=%s base=%s adapter=%s job=%s",
        record["id"],
        name,
        req.base_model,
        req.adapter,
        req.job_id,
    )
    return record


def cancel_merge(backend: Backend, merge_id: str) -> CancelOutcome | None:
    """A merge cancelled before it started also ends the fine-tuning job it was to finish,
    as the merger does when it stops one."""
    stores = backend.stores
    outcome = cancel_record(stores.merges, merge_id)
    job_id = outcome.record.get("job_id") if outcome is not None else None
    if outcome is None or not outcome.stopped_now or not job_id:
        return outcome
    unfinished = stores.jobs.update_if(
        job_id,
        lambda job: job.get("status") not in FINISHED_STATUSES,
        status="cancelled",
        finished_at=outcome.record["finished_at"],
    )
    if unfinished is not None:
        message = "Merge cancelled; the adapter is kept in the job's result folder."
        stores.job_events.append(job_id, job_event(message))
    log.info("event=merge_cancelled id=%s queued=true job=%s", merge_id, job_id)
    return outcome


MERGES: RecordAPI[MergeRequest] = RecordAPI(
    path="/v1/merges",
    kind="merge",
    id_param="merge_id",
    store=lambda stores: stores.merges,
    create=create_merge,
    schema=MergeRequest,
    cancel=cancel_merge,
)

router = add_record_routes(MERGES.router(), MERGES)
