"""Cancelling an evaluation: queued ones never start, running ones stop before their next task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.evaluator import tasks
from services.evaluator.tasks import EvalContext, run_eval
from shared.evals import EvalRequest, new_eval_record
from shared.settings import CommonSettings, EvaluatorSettings


@pytest.fixture
def api(controller: Callable[..., str], tiny_model_dir: Path) -> str:
    return controller(env={"MODELS_DIR": str(tiny_model_dir.parent)})


@pytest.fixture
def ctx(redis_url: str, redis_prefix: str, tmp_path: Path) -> EvalContext:
    common = CommonSettings(
        redis_url=redis_url, redis_key_prefix=redis_prefix, job_cancel_poll_seconds=0.001
    )
    return EvalContext(common, EvaluatorSettings(output_dir=tmp_path))


def create(api: str, model: str) -> dict:
    created = httpx.post(f"{api}/v1/evals", json={"model": model, "tasks": ["a", "b"]})
    assert created.status_code == 201, created.text
    return created.json()


def test_a_queued_evaluation_that_was_cancelled_never_starts(
    api: str, ctx: EvalContext, tiny_model_dir: Path
) -> None:
    record = create(api, tiny_model_dir.name)
    cancelled = httpx.post(f"{api}/v1/evals/{record['id']}/cancel").json()
    assert cancelled["cancel_requested"] is True
    assert run_eval(record["id"], ctx)["status"] == "cancelled"
    # Cancelling a finished evaluation changes nothing.
    again = httpx.post(f"{api}/v1/evals/{record['id']}/cancel").json()
    assert again["status"] == "cancelled"
    assert httpx.post(f"{api}/v1/evals/eval-nope/cancel").status_code == 404


def test_a_running_evaluation_stops_before_its_next_task(
    api: str, ctx: EvalContext, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = create(api, tiny_model_dir.name)
    evaluated: list[str] = []

    def fake_plan(plan: Any, progress: Callable[[dict], None]) -> tuple[dict, dict]:
        for index, name in enumerate(["a", "b"]):
            state = {"completed_tasks": index, "total_tasks": 2, "current_task": name}
            progress({**state, "partial": {}})
            evaluated.append(name)
            httpx.post(f"{api}/v1/evals/{record['id']}/cancel").raise_for_status()
        return {"tasks": []}, {}

    monkeypatch.setattr(tasks, "run_plan", fake_plan)
    assert run_eval(record["id"], ctx)["status"] == "cancelled"
    assert evaluated == ["a"]


@pytest.mark.parametrize(
    ("model_path", "data_dir", "param"),
    [
        ("/etc", None, "model"),
        ("tiny", "/etc", "data_dir"),
        ("tiny", "../../../../etc", "data_dir"),
    ],
)
def test_a_record_written_by_anyone_is_evaluated_only_from_allowed_folders(
    ctx: EvalContext,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    model_path: str,
    data_dir: str | None,
    param: str,
) -> None:
    model = str(tiny_model_dir) if model_path == "tiny" else model_path
    request = EvalRequest(model=model, tasks=["a"], data_dir=data_dir)
    ctx.evals.create(new_eval_record("eval-x", request, model))

    def no_run(plan: Any, progress: Callable[[dict], None]) -> tuple[dict, dict]:
        raise AssertionError("evaluated from a folder outside the allowed folders")

    monkeypatch.setattr(tasks, "run_plan", no_run)
    failed = run_eval("eval-x", ctx)
    assert failed["status"] == "failed" and failed["error"]["param"] == param
    assert "under an allowed folder" in failed["error"]["message"]
