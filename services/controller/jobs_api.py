"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning jobs API over the Celery ``train`` queue.

The controller validates the request (every bad field is named), records the job in Redis and
queues ``train.run_job``; the trainer service updates the record, its events and checkpoints.
Routes are plain ``def`` so Redis calls run in FastAPI's thread pool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.controller.openai_errors import OpenAIError
from shared.celery_app import TRAIN_JOB_TASK, train_queue
from shared.training import (
    TERMINAL_JOB_STATUSES,
    FineTuneRequest,
    model_context_length,
    new_job_id,
    new_job_record,
)
from shared.training_presets import apply_preset

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def _invalid(problems: list[tuple[str, str]]) -> OpenAIError:
    message = "; ".join(f"{field}: {text}" for field, text in problems)
    return OpenAIError(400, message, param=problems[0][0], code="invalid_fine_tuning_job")


def _parse(body: Any) -> FineTuneRequest:
    if isinstance(body, dict):
        try:
            body = apply_preset(body)
        except KeyError as exc:
            raise _invalid([("preset", exc.args[0])]) from None
    try:
        return FineTuneRequest.model_validate(body)
    except ValidationError as exc:
        problems = [
            (
                ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
                or "body",
                err["msg"],
            )
            for err in exc.errors()
        ]
        raise _invalid(problems) from None


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def check_request(req: FineTuneRequest, datasets: Any) -> list[tuple[str, str]]:
    """What a job needs that only this deployment can tell: model, files, context."""
    problems: list[tuple[str, str]] = []
    if _looks_local(req.model):
        if not (Path(req.model).expanduser() / "config.json").exists():
            problems.append(("model", f"{req.model!r} is not a model folder (no config.json)"))
    elif "/" not in req.model:
        problems.append(("model", f"{req.model!r} is neither a local folder nor a Hub id"))
    for field in ("training_file", "validation_file"):
        name = getattr(req, field)
        if name is None:
            continue
        if name.startswith("ds-"):
            dataset = datasets.get(name)
            if dataset is None:
                problems.append((field, f"unknown dataset {name!r}"))
            elif dataset["status"] != "succeeded":
                problems.append(
                    (field, f"dataset {name} is not ready (status {dataset['status']})")
                )
        elif not Path(name).expanduser().is_file():
            problems.append((field, f"{name!r} is neither a dataset id nor an existing file"))
    context = model_context_length(req.model) if _looks_local(req.model) else None
    if context is not None and req.hyperparameters.max_length > context:
        problems.append(
            (
                "hyperparameters.max_length",
                f"{req.hyperparameters.max_length} is beyond the model's context of {context}",
            )
        )
    return problems


@router.post("", status_code=201)
async def create_job(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _invalid([("body", f"malformed JSON ({exc})")]) from None
    req = _parse(body)
    state = request.app.state
    if problems := check_request(req, state.datasets):
        raise _invalid(problems)
    job_id = new_job_id()
    record = new_job_record(job_id, req, str(state.common.jobs_dir / job_id))
    record["status"] = "queued"
    state.jobs.create(record)
    state.celery.send_task(TRAIN_JOB_TASK, args=[job_id], queue=train_queue(req.gpus))
    state.job_events.append(
        job_id,
        {
            "object": "fine_tuning.job.event",
            "level": "info",
            "type": "message",
            "message": f"Created fine-tuning job: {job_id}",
            "data": None,
        },
    )
    log.info("event=job_queued id=%s model=%s method=%s", job_id, req.model, req.method)
    return JSONResponse(record, status_code=201)


def _get(request: Request, job_id: str) -> dict[str, Any]:
    record = request.app.state.jobs.get(job_id)
    if record is None:
        raise OpenAIError(
            404,
            f"No fine-tuning job {job_id!r}.",
            param="fine_tuning_job_id",
            code="fine_tuning_job_not_found",
        )
    return record


def _page(limit: int) -> None:
    if not 1 <= limit <= 100:
        raise _invalid([("limit", "must be between 1 and 100")])


@router.get("")
def list_jobs(request: Request, limit: int = 20, after: str | None = None) -> dict:
    _page(limit)
    try:
        records, has_more = request.app.state.jobs.list(limit, after)
    except KeyError:
        raise _invalid([("after", f"unknown job {after!r}")]) from None
    return {"object": "list", "data": records, "has_more": has_more}


@router.get("/{job_id}")
def get_job(job_id: str, request: Request) -> dict:
    return _get(request, job_id)


@router.get("/{job_id}/events")
def list_events(job_id: str, request: Request, limit: int = 20, after: str | None = None) -> dict:
    _get(request, job_id)
    _page(limit)
    try:
        events, has_more = request.app.state.job_events.page(job_id, limit, after)
    except KeyError:
        raise _invalid([("after", f"unknown event {after!r}")]) from None
    return {"object": "list", "data": events, "has_more": has_more}


@router.get("/{job_id}/checkpoints")
def list_checkpoints(job_id: str, request: Request, limit: int = 10) -> dict:
    _page(limit)
    checkpoints = list(reversed(_get(request, job_id).get("checkpoints", [])))
    return {"object": "list", "data": checkpoints[:limit], "has_more": len(checkpoints) > limit}


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, request: Request) -> dict:
    record = _get(request, job_id)
    if record["status"] in TERMINAL_JOB_STATUSES:
        return record
    if record.get("merge_id"):
        # Trained and merging: the merger polls its record's flag and cancels the job with it.
        request.app.state.merges.update(record["merge_id"], cancel_requested=True)
    # The trainer polls this flag every second and stops at its next step.
    return request.app.state.jobs.update(job_id, cancel_requested=True) or record
