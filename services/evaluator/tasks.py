"""Celery side of the evaluator: ``eval.run`` on queue ``eval``.

The task is a thin wrapper around ``run_eval``, a plain function the tests call directly; the
claim, lease, cancel and redelivery rules are the shared job runner's (``shared/jobs``). An
evaluation taken over from a runner that died runs again from its first task.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from services.evaluator.harness import EvalError, EvalPlan, run_plan
from shared.celery_app import EVAL_QUEUE, EVAL_RUN_TASK, make_celery
from shared.evals import EvalRequest, resolve_data_dir
from shared.jobs import Finished, JobFailed, JobRun, runner_identity
from shared.jobs.service import runner_for, watch_orphans_when_ready
from shared.paths import AllowedRoots, RefusedReference, check_loadable, safe_child
from shared.settings import CommonSettings, EvaluatorSettings
from shared.stores import Stores

log = logging.getLogger(__name__)

app = make_celery("evaluator")


class EvalContext:
    """The stores and settings an evaluation run needs."""

    def __init__(self, common: CommonSettings, settings: EvaluatorSettings) -> None:
        stores = Stores.connect(common)
        self.common = common
        self.evals = stores.evals
        self.board = stores.eval_results
        self.settings = settings
        self.roots = AllowedRoots.of(common)


def plan_for(record: dict[str, Any], settings: EvaluatorSettings, roots: AllowedRoots) -> EvalPlan:
    """The record's plan; whoever wrote the record, the model is a Hub id or a folder under the
    allowed folders, and so is the request's data folder (JobFailed otherwise)."""
    request = EvalRequest.model_validate(record["request"])
    try:
        model_path = check_loadable(str(record["model_path"]), roots)
    except RefusedReference as exc:
        raise JobFailed(f"model: {exc}", "invalid_model", "model") from None
    try:
        request.data_dir = resolve_data_dir(request.data_dir, roots)
    except RefusedReference as exc:
        raise JobFailed(f"data_dir: {exc}", "invalid_data_dir", "data_dir") from None
    plan = EvalPlan.from_request(request, model_path, settings)
    plan.tasks = [(t["task"], t["num_fewshot"]) for t in record["tasks"]]
    return plan


def evaluate(run: JobRun, ctx: EvalContext) -> Finished:
    """The evaluator's work: the plan's tasks one by one, progress on the record between them."""
    record = run.record
    log.info("event=eval_started id=%s model=%s", run.id, record["model"])

    def progress(state: dict[str, Any]) -> None:
        """Called before each task: the place to notice a cancel."""
        run.raise_if_stopped()
        run.update(
            progress={k: state[k] for k in ("completed_tasks", "total_tasks", "current_task")},
            partial_results=state["partial"],
        )

    try:
        table, raw = run_plan(plan_for(record, ctx.settings, ctx.roots), progress)
    except EvalError as exc:
        raise JobFailed(str(exc), "eval_failed") from exc
    output = safe_child(ctx.settings.output_dir, f"{run.id}.json")
    if output is None:
        raise JobFailed(f"{run.id!r} cannot name a results file")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(raw, indent=2, default=str))
    finished = int(time.time())
    ctx.board.put(record["model"], {"eval_id": run.id, "finished_at": finished, "results": table})
    log.info("event=eval_succeeded id=%s tasks=%d", run.id, len(table["tasks"]))
    return Finished({"results": table, "partial_results": None, "output_file": str(output)})


def run_eval(eval_id: str, ctx: EvalContext, owner: str = "") -> dict[str, Any] | None:
    runner = runner_for(ctx.evals, owner or runner_identity("evaluator"), ctx.common)
    return runner.run(eval_id, lambda run: evaluate(run, ctx))


watch_orphans_when_ready(app, lambda stores: stores.evals, EVAL_RUN_TASK, EVAL_QUEUE)


@app.task(name=EVAL_RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def run_eval_task(eval_id: str) -> str:
    record = run_eval(eval_id, EvalContext(CommonSettings(), EvaluatorSettings()))
    return record["status"] if record else "missing"
