"""``/v1/evals``: lm-evaluation-harness runs (the Open LLM Leaderboard set) as queued jobs.

The controller validates the request (every bad field is named), records the evaluation in
Redis and queues ``eval.run`` on queue ``eval``; the evaluator service updates the record's
progress and results and keeps each model's latest results for ``GET /v1/evals/results``.
A running evaluation stops before its next task when cancelled.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from services.controller.field_errors import Problem, raise_if
from services.controller.records import Backend
from services.controller.records_api import RecordAPI, add_record_routes, backend_of
from shared.celery_app import EVAL_QUEUE, EVAL_RUN_TASK
from shared.evals import (
    EvalRequest,
    new_eval_id,
    new_eval_record,
    resolve_data_dir,
    resolve_model,
    side_by_side,
)
from shared.paths import AllowedRoots, RefusedReference

log = logging.getLogger(__name__)


def check_request(req: EvalRequest, roots: AllowedRoots) -> tuple[list[Problem], EvalRequest, str]:
    """Problems with the model and the data folder; the request with its data folder resolved;
    the model's folder (or Hub id)."""
    problems: list[Problem] = []
    model_path = req.model
    try:
        model_path = resolve_model(req.model, roots)
    except RefusedReference as exc:
        problems.append(("model", str(exc)))
    data_dir = req.data_dir
    try:
        data_dir = resolve_data_dir(req.data_dir, roots)
    except RefusedReference as exc:
        problems.append(("data_dir", str(exc)))
    return problems, req.model_copy(update={"data_dir": data_dir}), model_path


def create_eval(backend: Backend, req: EvalRequest) -> dict[str, Any]:
    problems, req, model_path = check_request(req, AllowedRoots.of(backend.common))
    raise_if(problems)
    eval_id = new_eval_id()
    record = new_eval_record(eval_id, req, model_path)
    backend.stores.evals.create(record)
    backend.celery.send_task(EVAL_RUN_TASK, args=[eval_id], queue=EVAL_QUEUE)
    log.info("event=eval_queued id=%s model=%s tasks=%d", eval_id, req.model, len(req.plan()))
    return record


EVALS: RecordAPI[EvalRequest] = RecordAPI(
    path="/v1/evals",
    kind="evaluation",
    id_param="eval_id",
    store=lambda stores: stores.evals,
    create=create_eval,
    schema=EvalRequest,
)

router = EVALS.router()


# Before the record routes: GET /v1/evals/{eval_id} would take "results" for an id.
@router.get("/results")
def results_side_by_side(request: Request) -> dict:
    """Each model's latest results, and a task x model table of them."""
    board = backend_of(request).stores.eval_results.all()
    return {"object": "evaluation.results", "models": board, "table": side_by_side(board)}


add_record_routes(router, EVALS)
