"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning jobs API over the Celery ``train`` queues.

The controller validates the request (every bad field is named), records the job in Redis and
queues ``train.run_job`` on the queue for the GPUs it needs; the trainer service updates the
record, its events and checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
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
from shared.contracts import looks_like_path
from shared.job_records import RecordStore
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


def _check_model(model: str) -> list[Problem]:
    if looks_like_path(model):
        if not (Path(model).expanduser() / "config.json").exists():
            return [("model", f"{model!r} is not a model folder (no config.json)")]
    elif "/" not in model:
        return [("model", f"{model!r} is neither a local folder nor a Hub id")]
    return []


def _check_file(field: str, name: str, datasets: RecordStore) -> list[Problem]:
    if not name.startswith("ds-"):
        if Path(name).expanduser().is_file():
            return []
        return [(field, f"{name!r} is neither a dataset id nor an existing file")]
    dataset = datasets.get(name)
    if dataset is None:
        return [(field, f"unknown dataset {name!r}")]
    if dataset["status"] != "succeeded":
        return [(field, f"dataset {name} is not ready (status {dataset['status']})")]
    return []


def check_request(req: FineTuneRequest, datasets: RecordStore) -> list[Problem]:
    """What a job needs that only this deployment can tell: model, files, context."""
    problems = _check_model(req.model)
    for field in ("training_file", "validation_file"):
        if (name := getattr(req, field)) is not None:
            problems += _check_file(field, name, datasets)
    context = model_context_length(req.model) if looks_like_path(req.model) else None
    if context is not None and req.hyperparameters.max_length > context:
        problems.append(
            (
                "hyperparameters.max_length",
                f"{req.hyperparameters.max_length} is beyond the model's context of {context}",
            )
        )
    return problems


def create_job(backend: Backend, req: FineTuningJobRequest) -> dict[str, Any]:
    stores = backend.stores
    raise_if(check_request(req, stores.datasets))
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
