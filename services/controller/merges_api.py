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
from shared.paths import (
    ADAPTER_FOLDER,
    AllowedRoots,
    RefusedReference,
    model_folder,
    resolve_model,
)
from shared.settings import DEFAULT_MODEL_NAME, CommonSettings
from shared.training import job_event

log = logging.getLogger(__name__)


def _check_base(base_model: str, roots: AllowedRoots) -> tuple[list[Problem], str]:
    """Problems with ``base_model`` (a folder under the roots or a published model's name) and
    its resolved folder."""
    try:
        base = resolve_model(base_model, roots, hub_ids=False)
    except RefusedReference as exc:
        return [("base_model", str(exc))], base_model
    config = Path(base) / "config.json"
    try:
        quantized = bool(json.loads(config.read_text()).get("quantization_config"))
    except (OSError, ValueError, AttributeError):
        return [("base_model", f"{base_model!r} has an unreadable config.json")], base
    if quantized:
        message = f"{base_model!r} is quantized; merge into the unquantized (16-bit or fp32) base"
        return [("base_model", message)], base
    return [], base


def _check_adapter(
    req: MergeRequest, jobs: RecordStore, roots: AllowedRoots
) -> tuple[str | None, dict | None, str]:
    """What is wrong with ``adapter`` (None if nothing), the job it names (if any), and the
    adapter as the merger will read it (a resolved folder, or the job id)."""
    job_id = req.adapter_job_id
    if job_id is None:
        try:
            return None, None, str(model_folder(req.adapter, roots, ADAPTER_FOLDER))
        except RefusedReference as exc:
            return f"{exc}, nor a fine-tuning job id", None, req.adapter
    job = jobs.get(job_id)
    if job is None:
        return f"unknown fine-tuning job {job_id!r}", None, job_id
    if job["status"] != "succeeded" or not job.get("result_dir"):
        return f"fine-tuning job {job_id} has not finished (status {job['status']})", job, job_id
    result = roots.inside(str(job["result_dir"]))
    if result is None or not (result / "adapter_config.json").is_file():
        return (
            (
                f"fine-tuning job {job_id} trained a full model (method {job.get('method')}); "
                "there is no adapter to merge"
            ),
            job,
            job_id,
        )
    return None, job, job_id


def _check_target(name: str, req: MergeRequest, common: CommonSettings) -> list[Problem]:
    """Published models are replaced only where the deployment allows it, the default never."""
    if name == DEFAULT_MODEL_NAME:
        return [("name", f"{name!r} is the default model, which a merge never replaces")]
    if req.overwrite and not common.models_allow_overwrite:
        return [
            (
                "overwrite",
                "replacing a published model is turned off on this deployment "
                "(MODELS_ALLOW_OVERWRITE)",
            )
        ]
    if (Path(common.models_dir) / name).exists() and not req.overwrite:
        derived = "" if req.name else " (derived from the adapter)"
        hint = "; pass overwrite: true to replace it" if common.models_allow_overwrite else ""
        return [("name", f"a model named {name!r}{derived} already exists{hint}")]
    return []


def check_request(
    req: MergeRequest, jobs: RecordStore, common: CommonSettings
) -> tuple[list[Problem], MergeRequest]:
    """What a merge needs that only this deployment can tell; returns (problems, the request
    with its name and its folders resolved)."""
    roots = AllowedRoots.of(common)
    problems, base = _check_base(req.base_model, roots)
    adapter_problem, job, adapter = _check_adapter(req, jobs, roots)
    if adapter_problem is not None:
        problems.append(("adapter", adapter_problem))
    name = req.name or default_merge_name(req, job)
    problems += _check_target(name, req, common)
    return problems, req.model_copy(update={"name": name, "base_model": base, "adapter": adapter})


def create_merge(backend: Backend, req: MergeRequest) -> dict[str, Any]:
    stores = backend.stores
    problems, checked = check_request(req, stores.jobs, backend.common)
    raise_if(problems)
    record = queue_merge(backend.celery, stores.merges, checked)
    log.info(
        "event=merge_queued id=%s name=%s base=%s adapter=%s",
        record["id"],
        checked.name,
        checked.base_model,
        checked.adapter,
    )
    return record


def cancel_merge(backend: Backend, merge_id: str) -> CancelOutcome | None:
    """A merge cancelled before it started also ends the fine-tuning job it was to finish (the
    job whose ``merge_id`` it is), as the merger does when it stops one; nothing else."""
    stores = backend.stores
    outcome = cancel_record(stores.merges, merge_id)
    job_id = outcome.record.get("job_id") if outcome is not None else None
    if outcome is None or not outcome.stopped_now or not job_id:
        return outcome
    # Only the job that handed its adapter to this very merge (its ``merge_id``) ends with it.
    unfinished = stores.jobs.update_if(
        job_id,
        lambda job: job.get("merge_id") == merge_id and job.get("status") not in FINISHED_STATUSES,
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
