"""Celery side of the evaluator: ``eval.run`` on queue ``eval``.

The task is a thin wrapper around ``run_eval``, a plain function the tests call directly. A
re-delivered job (its worker died) simply runs again from the start.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from services.evaluator.harness import EvalError, EvalPlan, run_plan
from shared.celery_app import EVAL_RUN_TASK, make_celery
from shared.evals import EVAL_KIND, TERMINAL_EVAL_STATUSES, EvalRequest, ResultsBoard
from shared.job_records import RecordStore
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings, EvaluatorSettings

log = logging.getLogger(__name__)

app = make_celery("evaluator")


class EvalContext:
    """The stores and settings an evaluation run needs."""

    def __init__(self, common: CommonSettings, settings: EvaluatorSettings) -> None:
        client = sync_redis(common.redis_url)
        keys = RedisKeys(common.redis_key_prefix)
        self.evals = RecordStore(client, keys, EVAL_KIND)
        self.board = ResultsBoard(client, keys)
        self.settings = settings


def plan_for(record: dict[str, Any], settings: EvaluatorSettings) -> EvalPlan:
    request = EvalRequest.model_validate(record["request"])
    return EvalPlan(
        model_path=record["model_path"],
        tasks=[(t["task"], t["num_fewshot"]) for t in record["tasks"]],
        limit=request.limit,
        batch_size=request.batch_size,
        device=settings.device if request.device == "auto" else request.device,
        dtype=request.dtype,
        data_dir=request.data_dir or settings.data_dir or None,
    )


def _failed(ctx: EvalContext, eval_id: str, code: str, message: str) -> dict[str, Any] | None:
    return ctx.evals.update(
        eval_id,
        status="failed",
        finished_at=int(time.time()),
        error={"code": code, "message": message, "param": None},
    )


class EvalCancelled(Exception):
    """The evaluation's cancel flag was seen between two tasks."""


def _cancelled(ctx: EvalContext, eval_id: str) -> dict[str, Any] | None:
    log.info("event=eval_cancelled id=%s", eval_id)
    return ctx.evals.update(eval_id, status="cancelled", finished_at=int(time.time()))


def run_eval(eval_id: str, ctx: EvalContext) -> dict[str, Any] | None:
    record = ctx.evals.get(eval_id)
    if record is None:
        log.error("event=eval_missing id=%s", eval_id)
        return None
    if record["status"] in TERMINAL_EVAL_STATUSES:
        return record
    if record.get("cancel_requested"):
        return _cancelled(ctx, eval_id)
    ctx.evals.update(eval_id, status="running", started_at=int(time.time()))
    log.info("event=eval_started id=%s model=%s", eval_id, record["model"])

    def progress(state: dict[str, Any]) -> None:
        """Called before each task: the place to notice a cancel."""
        if (ctx.evals.get(eval_id) or {}).get("cancel_requested"):
            raise EvalCancelled
        ctx.evals.update(
            eval_id,
            progress={k: state[k] for k in ("completed_tasks", "total_tasks", "current_task")},
            partial_results=state["partial"],
        )

    try:
        table, raw = run_plan(plan_for(record, ctx.settings), progress)
    except EvalCancelled:
        return _cancelled(ctx, eval_id)
    except EvalError as exc:
        log.warning("event=eval_failed id=%s error=%s", eval_id, exc)
        return _failed(ctx, eval_id, "eval_failed", str(exc))
    except Exception as exc:
        log.exception("event=eval_crashed id=%s", eval_id)
        return _failed(ctx, eval_id, "internal_error", f"{type(exc).__name__}: {exc}")
    output = ctx.settings.output_dir / f"{eval_id}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(raw, indent=2, default=str))
    finished = int(time.time())
    ctx.board.put(record["model"], {"eval_id": eval_id, "finished_at": finished, "results": table})
    log.info("event=eval_succeeded id=%s tasks=%d", eval_id, len(table["tasks"]))
    return ctx.evals.update(
        eval_id,
        status="succeeded",
        finished_at=finished,
        results=table,
        partial_results=None,
        output_file=str(output),
    )


@app.task(name=EVAL_RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def run_eval_task(eval_id: str) -> str:
    record = run_eval(eval_id, EvalContext(CommonSettings(), EvaluatorSettings()))
    return record["status"] if record else "missing"
