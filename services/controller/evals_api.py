"""``/v1/evals``: lm-evaluation-harness runs (the Open LLM Leaderboard set) as queued jobs.

The controller validates the request (every bad field is named), records the evaluation in
Redis and queues ``eval.run`` on queue ``eval``; the evaluator service updates the record's
progress and results and keeps each model's latest results for ``GET /v1/evals/results``.
Routes are plain ``def`` (except reading the body) so Redis calls run in FastAPI's thread pool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.controller.openai_errors import OpenAIError
from shared.celery_app import EVAL_QUEUE, EVAL_RUN_TASK
from shared.evals import (
    TERMINAL_EVAL_STATUSES,
    EvalRequest,
    new_eval_id,
    new_eval_record,
    resolve_model,
    side_by_side,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/evals", tags=["evaluations"])


def _invalid(problems: list[tuple[str, str]]) -> OpenAIError:
    message = "; ".join(f"{field}: {text}" for field, text in problems)
    return OpenAIError(400, message, param=problems[0][0], code="invalid_evaluation")


def _parse(body: Any) -> EvalRequest:
    try:
        return EvalRequest.model_validate(body)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Union members (literal / list / int / dict) add their own names to the location.
            loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal["))]
            loc = [p for p in loc if p not in ("list[str]", "int", "dict[str,int]")]
            problems.append((".".join(loc) or _field_in(err["msg"]), err["msg"]))
        raise _invalid(problems) from None


def _field_in(message: str) -> str:
    return "num_fewshot" if "num_fewshot" in message else "body"


def _check_data_dir(req: EvalRequest) -> list[tuple[str, str]]:
    if req.data_dir and not Path(req.data_dir).expanduser().is_dir():
        return [("data_dir", f"{req.data_dir!r} is not a folder")]
    return []


@router.post("", status_code=201)
async def create_eval(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _invalid([("body", f"malformed JSON ({exc})")]) from None
    req = _parse(body)
    state = request.app.state
    problems = _check_data_dir(req)
    try:
        model_path = resolve_model(req.model, state.common.models_dir)
    except ValueError as exc:
        problems.insert(0, ("model", str(exc)))
    if problems:
        raise _invalid(problems)
    eval_id = new_eval_id()
    record = new_eval_record(eval_id, req, model_path)
    state.evals.create(record)
    state.celery.send_task(EVAL_RUN_TASK, args=[eval_id], queue=EVAL_QUEUE)
    log.info("event=eval_queued id=%s model=%s tasks=%d", eval_id, req.model, len(req.plan()))
    return JSONResponse(record, status_code=201)


@router.get("")
def list_evals(request: Request, limit: int = 20, after: str | None = None) -> dict:
    if not 1 <= limit <= 100:
        raise _invalid([("limit", "must be between 1 and 100")])
    try:
        records, has_more = request.app.state.evals.list(limit, after)
    except KeyError:
        raise _invalid([("after", f"unknown evaluation {after!r}")]) from None
    return {"object": "list", "data": records, "has_more": has_more}


@router.get("/results")
def results_side_by_side(request: Request) -> dict:
    """Each model's latest results, and a task x model table of them."""
    board = request.app.state.eval_results.all()
    return {"object": "evaluation.results", "models": board, "table": side_by_side(board)}


@router.get("/{eval_id}")
def get_eval(eval_id: str, request: Request) -> dict:
    record = request.app.state.evals.get(eval_id)
    if record is None:
        raise OpenAIError(
            404, f"No evaluation {eval_id!r}.", param="eval_id", code="evaluation_not_found"
        )
    return record


@router.post("/{eval_id}/cancel")
def cancel_eval(eval_id: str, request: Request) -> dict:
    """A running evaluation stops before its next task; a queued one never starts."""
    store = request.app.state.evals
    record = get_eval(eval_id, request)
    if record["status"] in TERMINAL_EVAL_STATUSES:
        return record
    return store.update(eval_id, cancel_requested=True) or record
