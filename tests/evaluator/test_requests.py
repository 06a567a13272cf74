"""The evaluation request contract: task sets, few-shot counts, model resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.evals import LEADERBOARD_TASKS, EvalRequest, resolve_model


def test_the_leaderboard_set_has_the_originals_tasks_and_shots() -> None:
    plan = EvalRequest(model="m").plan()
    assert len(plan) == 60
    assert plan[0] == ("arc_challenge", 25)
    assert plan[1] == ("hellaswag", 10)
    assert plan[-1] == ("truthfulqa_mc2", 0)
    mmlu = [(n, s) for n, s in plan if n.startswith("mmlu_")]
    assert len(mmlu) == 57 and {s for _, s in mmlu} == {5}
    assert list(LEADERBOARD_TASKS) == [name for name, _ in plan]


def test_few_shot_counts_apply_to_all_or_per_task() -> None:
    assert EvalRequest(model="m", tasks=["a", "b"], num_fewshot=3).plan() == [("a", 3), ("b", 3)]
    per_task = EvalRequest(model="m", tasks=["a", "b"], num_fewshot={"b": 1}).plan()
    assert per_task == [("a", None), ("b", 1)]
    leaderboard = dict(EvalRequest(model="m", num_fewshot={"hellaswag": 0}).plan())
    assert leaderboard["hellaswag"] == 0 and leaderboard["arc_challenge"] == 25


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"model": "m", "tasks": []}, "at least one task"),
        ({"model": "m", "tasks": ["a", "a"]}, "must not repeat"),
        ({"model": "m", "tasks": ["a"], "num_fewshot": {"b": 1}}, "not in the request"),
        ({"model": "m", "num_fewshot": -1}, ">= 0"),
        ({"model": "m", "limit": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_requests_are_refused(body: dict, text: str) -> None:
    with pytest.raises(ValidationError, match=text):
        EvalRequest.model_validate(body)


def test_models_resolve_to_folders_or_hub_ids(tmp_path: Path) -> None:
    served = tmp_path / "models" / "camel-7b"
    served.mkdir(parents=True)
    (served / "config.json").write_text("{}")
    models_dir = tmp_path / "models"
    assert resolve_model(str(served), models_dir) == str(served.resolve())
    assert resolve_model("camel-7b", models_dir) == str(served.resolve())
    assert resolve_model("camel-ai/CAMEL-13B-Combined-Data", models_dir).startswith("camel-ai/")
    with pytest.raises(ValueError, match=r"no config\.json"):
        resolve_model(str(tmp_path), models_dir)
    with pytest.raises(ValueError, match="cannot be evaluated"):
        resolve_model("served-only-by-a-worker", models_dir)
