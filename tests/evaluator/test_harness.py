"""The harness path, offline, on the tiny model and the repo's local task."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.evaluator import harness
from services.evaluator.harness import EvalError, EvalPlan, run_plan
from tests.evaluator.conftest import capitals_docs, expected_scores


def test_the_score_matches_one_computed_by_hand(tiny_model_dir: Path, eval_data_dir: Path) -> None:
    seen: list[dict] = []
    plan = EvalPlan(
        model_path=str(tiny_model_dir),
        tasks=[("capitals_mc", 0)],
        device="cpu",
        dtype="float32",
        data_dir=str(eval_data_dir),
    )
    table, raw = run_plan(plan, seen.append)
    [row] = table["tasks"]
    expected = expected_scores(tiny_model_dir, capitals_docs())
    assert row["task"] == "capitals_mc" and row["metric"] == "acc_norm"
    assert row["value"] == expected["acc_norm"]
    assert round(raw["results"]["capitals_mc"]["acc,none"] * 100, 2) == expected["acc"]
    assert row["num_fewshot"] == 0 and row["samples"] == 8
    assert [(p["completed_tasks"], p["current_task"]) for p in seen] == [
        (0, "capitals_mc"),
        (1, None),
    ]
    assert seen[-1]["partial"]["tasks"][0]["value"] == row["value"]


def test_limit_and_few_shot_reach_the_harness(tiny_model_dir: Path, eval_data_dir: Path) -> None:
    plan = EvalPlan(
        model_path=str(tiny_model_dir),
        tasks=[("capitals_mc", 2)],
        limit=3,
        device="cpu",
        data_dir=str(eval_data_dir),
    )
    table, raw = run_plan(plan)
    assert table["tasks"][0]["samples"] == 3 and table["tasks"][0]["num_fewshot"] == 2
    assert raw["n-samples"]["capitals_mc"] == {"original": 8, "effective": 3}


def test_a_dataset_missing_offline_fails_before_the_model_loads(
    tiny_model_dir: Path, eval_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model(plan: EvalPlan) -> None:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(harness, "load_model", no_model)
    plan = EvalPlan(
        model_path=str(tiny_model_dir),
        tasks=[("capitals_mc", 0), ("offline_mc", 0)],
        data_dir=str(eval_data_dir),
    )
    started = time.monotonic()
    with pytest.raises(EvalError) as caught:
        run_plan(plan)
    assert "camel-chat/not-downloaded-mc" in str(caught.value)
    assert "offline_mc" in str(caught.value) and "EVAL_DATA_DIR" in str(caught.value)
    assert time.monotonic() - started < 30


def test_unknown_tasks_and_data_folders_are_named(
    tiny_model_dir: Path, eval_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval.tasks import TaskManager

    # Indexing lm-eval's thousands of built-in tasks takes long; the local ones suffice here.
    monkeypatch.setattr(
        harness,
        "task_manager",
        lambda names, data_dir: TaskManager(include_path=str(data_dir), include_defaults=False),
    )
    with pytest.raises(EvalError, match="unknown task 'no_such_task'"):
        run_plan(EvalPlan(str(tiny_model_dir), [("no_such_task", 0)], data_dir=str(eval_data_dir)))
    with pytest.raises(EvalError, match="does not exist"):
        run_plan(EvalPlan(str(tiny_model_dir), [("x", 0)], data_dir=str(tmp_path / "none")))
