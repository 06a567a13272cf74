"""The evaluation request contract: task sets, few-shot counts, model resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.evals import LEADERBOARD_TASKS, EvalRequest, resolve_model
from shared.paths import AllowedRoots
from shared.settings import CommonSettings


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


def roots_in(folder: Path) -> AllowedRoots:
    names = ("models_dir", "datasets_dir", "jobs_dir", "import_dir")
    return AllowedRoots.of(CommonSettings(**{name: folder / name for name in names}))


def test_models_resolve_to_folders_or_hub_ids(tmp_path: Path) -> None:
    served = tmp_path / "models_dir" / "camel-7b"
    served.mkdir(parents=True)
    (served / "config.json").write_text("{}")
    roots = roots_in(tmp_path)
    assert resolve_model(str(served), roots) == str(served.resolve())
    assert resolve_model("camel-7b", roots) == str(served.resolve())
    assert resolve_model("camel-ai/CAMEL-13B-Combined-Data", roots).startswith("camel-ai/")
    (tmp_path / "import_dir" / "empty").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no config\.json"):
        resolve_model(str(tmp_path / "import_dir" / "empty"), roots)
    with pytest.raises(ValueError, match="cannot be evaluated"):
        resolve_model("served-only-by-a-worker", roots)


def test_a_model_outside_the_allowed_folders_reads_as_a_missing_one(tmp_path: Path) -> None:
    """The same answer for a folder that exists outside the roots and one that exists nowhere."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    roots = roots_in(tmp_path)
    answers = []
    for folder in (outside, tmp_path / "nowhere", tmp_path / "models_dir" / ".." / "elsewhere"):
        with pytest.raises(ValueError) as refused:
            resolve_model(str(folder), roots)
        answers.append(str(refused.value).replace(str(folder), "<path>"))
    assert len(set(answers)) == 1
    assert answers[0].endswith(
        "under an allowed folder (MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR)"
    )
