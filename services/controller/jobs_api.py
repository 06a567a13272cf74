"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning jobs API over the Celery ``train`` queues.

The controller validates the request (every bad field is named), records the job in Redis and
queues ``train.run_job`` on the queue for the GPUs it needs; the trainer service updates the
record, its events and checkpoints.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from pydantic import model_validator

from services.controller.field_errors import Problem, raise_if
from services.controller.merges_api import cancel_merge
from services.controller.placement import check_gpus
from services.controller.records import (
    FINISHED_STATUSES,
    Backend,
    CancelOutcome,
    cancel_record,
    check_page_size,
)
from services.controller.records_api import RecordAPI, add_record_routes, backend_of
from shared.celery_app import TRAIN_JOB_TASK, train_queue
from shared.job_records import RecordStore
from shared.paths import (
    AllowedRoots,
    RefusedReference,
    is_dataset_id,
    resolve_data_file,
    resolve_model,
)
from shared.training import (
    FineTuneRequest,
    job_event,
    model_context_length,
    new_job_id,
    new_job_record,
)
from shared.training_presets import apply_preset

log = logging.getLogger(__name__)


class FineTuningJobRequest(FineTuneRequest):
    """``FineTuneRequest`` as sent: a ``preset``'s recipe fills what the body leaves out."""

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        try:
            return apply_preset(data)
        except KeyError as exc:
            raise ValueError(f"preset: {exc.args[0]}") from None


def check_request(
    req: FineTuneRequest, datasets: RecordStore, roots: AllowedRoots
) -> tuple[list[Problem], FineTuneRequest]:
    """What a job needs that only this deployment can tell: model, files, context. Returns the
    problems and the request with its paths resolved (dataset ids and Hub ids as sent)."""
    problems: list[Problem] = []
    update: dict[str, Any] = {}
    try:
        update["model"] = resolve_model(req.model, roots)
    except RefusedReference as exc:
        problems.append(("model", str(exc)))
    for field in ("training_file", "validation_file"):
        name = getattr(req, field)
        if name is None:
            continue
        try:
            found = resolve_data_file(name, roots, datasets)
            update[field] = name if is_dataset_id(name) else str(found)
        except RefusedReference as exc:
            problems.append((field, str(exc)))
    model = update.get("model", "")
    context = model_context_length(model) if model.startswith("/") else None
    if context is not None and req.hyperparameters.max_length > context:
        problems.append(
            (
                "hyperparameters.max_length",
                f"{req.hyperparameters.max_length} is beyond the model's context of {context}",
            )
        )
    return problems, req.model_copy(update=update)


def create_job(backend: Backend, req: FineTuningJobRequest) -> dict[str, Any]:
    stores = backend.stores
    problems, req = check_request(req, stores.datasets, AllowedRoots.of(backend.common))
    raise_if(problems)
    raise_if(check_gpus(req.gpus, stores))
    job_id = new_job_id()
    record = new_job_record(job_id, req, str(backend.common.jobs_dir / job_id))
    record["status"] = "queued"
    stores.jobs.create(record)
    backend.celery.send_task(TRAIN_JOB_TASK, args=[job_id], queue=train_queue(req.gpus))
    stores.job_events.append(job_id, job_event(f"Created fine-tuning job: {job_id}"))
    log.info("event=job_queued id=%s model=%s method=%s", job_id, req.model, req.method)
    return record


def cancel_job(backend: Backend, job_id: str) -> CancelOutcome | None:
    """A job trained and merging (it has a ``merge_id``) is cancelled with its merge."""
    stores = backend.stores
    record = stores.jobs.get(job_id)
    if record and record.get("merge_id") and record.get("status") not in FINISHED_STATUSES:
        cancel_merge(backend, record["merge_id"])
    outcome = cancel_record(stores.jobs, job_id)
    if outcome is not None and outcome.stopped_now:
        stores.job_events.append(job_id, job_event("Job cancelled before it started."))
        log.info("event=job_cancelled id=%s queued=true", job_id)
    return outcome


JOBS: RecordAPI[FineTuningJobRequest] = RecordAPI(
    path="/v1/fine_tuning/jobs",
    kind="fine_tuning_job",
    id_param="fine_tuning_job_id",
    store=lambda stores: stores.jobs,
    create=create_job,
    schema=FineTuningJobRequest,
    events=lambda stores: stores.job_events,
    cancel=cancel_job,
    noun="fine-tuning job",
    tag="fine-tuning",
)

router = JOBS.router()


@router.get("/{fine_tuning_job_id}/checkpoints")
def list_checkpoints(fine_tuning_job_id: str, request: Request, limit: int = 10) -> dict:
    """Newest first; the trainer adds one per save (OpenAI's ``fine_tuning.job.checkpoint``)."""
    check_page_size(limit)
    job = JOBS.get(backend_of(request), fine_tuning_job_id)
    checkpoints = list(reversed(job.get("checkpoints", [])))
    return {"object": "list", "data": checkpoints[:limit], "has_more": len(checkpoints) > limit}


add_record_routes(router, JOBS)
