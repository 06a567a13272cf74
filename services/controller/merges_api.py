"""``/v1/merges``: merge a LoRA adapter into its base model over the Celery ``merge`` queue.

The controller validates the request against this deployment's files and job records (every bad
field is named), records the merge in Redis and queues ``merge.run``; the merger service updates
the record and publishes the model as ``MODELS_DIR/<name>``. Routes are plain ``def`` (but the
create route, which reads the body) so Redis and file checks run in FastAPI's thread pool.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from services.controller.openai_errors import OpenAIError
from shared.merging import (
    TERMINAL_MERGE_STATUSES,
    MergeRequest,
    default_merge_name,
    queue_merge,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/merges", tags=["merges"])


def _invalid(problems: list[tuple[str, str]]) -> OpenAIError:
    message = "; ".join(f"{field}: {text}" for field, text in problems)
    return OpenAIError(400, message, param=problems[0][0], code="invalid_merge")


def _parse(body: Any) -> MergeRequest:
    try:
        return MergeRequest.model_validate(body)
    except ValidationError as exc:
        problems = [
            (
                ".".join(str(p) for p in err["loc"]) or "body",
                err["msg"].removeprefix("Value error, "),
            )
            for err in exc.errors()
        ]
        raise _invalid(problems) from None


def _check_base(base_model: str) -> list[tuple[str, str]]:
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


def _check_adapter(req: MergeRequest, jobs: Any) -> tuple[str | None, dict | None]:
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
    req: MergeRequest, jobs: Any, models_dir: Path
) -> tuple[list[tuple[str, str]], str]:
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


def _create(state: Any, req: MergeRequest) -> dict[str, Any]:
    problems, name = check_request(req, state.jobs, Path(state.common.models_dir))
    if problems:
        raise _invalid(problems)
    record = queue_merge(state.celery, state.merges, req.model_copy(update={"name": name}))
    log.info(
        "event=merge_queued id=%s name=%s base=%s adapter=%s job=%s",
        record["id"],
        name,
        req.base_model,
        req.adapter,
        req.job_id,
    )
    return record


@router.post("", status_code=201)
async def create_merge(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _invalid([("body", f"malformed JSON ({exc})")]) from None
    req = _parse(body)
    record = await run_in_threadpool(_create, request.app.state, req)
    return JSONResponse(record, status_code=201)


def _get(request: Request, merge_id: str) -> dict[str, Any]:
    record = request.app.state.merges.get(merge_id)
    if record is None:
        raise OpenAIError(404, f"No merge {merge_id!r}.", param="merge_id", code="merge_not_found")
    return record


@router.get("")
def list_merges(request: Request, limit: int = 20, after: str | None = None) -> dict:
    if not 1 <= limit <= 100:
        raise _invalid([("limit", "must be between 1 and 100")])
    try:
        records, has_more = request.app.state.merges.list(limit, after)
    except KeyError:
        raise _invalid([("after", f"unknown merge {after!r}")]) from None
    return {"object": "list", "data": records, "has_more": has_more}


@router.get("/{merge_id}")
def get_merge(merge_id: str, request: Request) -> dict:
    return _get(request, merge_id)


@router.post("/{merge_id}/cancel")
def cancel_merge(merge_id: str, request: Request) -> dict:
    record = _get(request, merge_id)
    if record["status"] in TERMINAL_MERGE_STATUSES:
        return record
    # The merger looks at this flag between phases; nothing is published after it stops.
    return request.app.state.merges.update(merge_id, cancel_requested=True) or record
