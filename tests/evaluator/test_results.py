"""Harness output -> leaderboard numbers, as the original's results parser printed them."""

from __future__ import annotations

from services.evaluator.results import format_table, summarize
from shared.evals import side_by_side


def _raw() -> dict:
    return {
        "results": {
            "arc_challenge": {"acc,none": 0.5, "acc_norm,none": 0.55, "acc_norm_stderr,none": 0.1},
            "hellaswag": {"acc,none": 0.6, "acc_norm,none": 0.8},
            "mmlu_anatomy": {"acc,none": 0.4},
            "mmlu_virology": {"acc,none": 0.3},
            "truthfulqa_mc2": {"acc,none": 0.45, "acc_stderr,none": 0.01},
        },
        "n-shot": {"arc_challenge": 25, "hellaswag": 10, "truthfulqa_mc2": 0},
        "n-samples": {"arc_challenge": {"original": 1172, "effective": 10}},
    }


def test_metrics_are_the_leaderboards_and_mmlu_is_averaged() -> None:
    order = ["arc_challenge", "hellaswag", "mmlu_anatomy", "mmlu_virology", "truthfulqa_mc2"]
    table = summarize(_raw(), order)
    rows = {row["task"]: row for row in table["tasks"]}
    assert [row["task"] for row in table["tasks"]] == order
    assert (rows["arc_challenge"]["metric"], rows["arc_challenge"]["value"]) == ("acc_norm", 55.0)
    assert rows["arc_challenge"]["num_fewshot"] == 25 and rows["arc_challenge"]["samples"] == 10
    assert rows["hellaswag"]["value"] == 80.0
    assert (rows["mmlu_anatomy"]["metric"], rows["mmlu_anatomy"]["value"]) == ("acc", 40.0)
    assert (rows["truthfulqa_mc2"]["metric"], rows["truthfulqa_mc2"]["value"]) == ("mc2", 45.0)
    assert table["mmlu_average"] == 35.0
    assert table["leaderboard_average"] == round((55 + 80 + 35 + 45) / 4, 2)
    text = format_table(table)
    assert "mmlu_average" in text and "35.00" in text


def test_without_all_four_benchmarks_there_is_no_leaderboard_average() -> None:
    table = summarize(_raw(), ["arc_challenge", "mmlu_anatomy"])
    assert table["mmlu_average"] == 40.0 and table["leaderboard_average"] is None


def test_models_are_compared_side_by_side() -> None:
    a = {"results": summarize(_raw(), ["arc_challenge", "mmlu_anatomy"])}
    b = {"results": summarize(_raw(), ["hellaswag", "mmlu_virology"])}
    comparison = side_by_side({"b": b, "a": a})
    assert comparison["models"] == ["a", "b"]
    rows = {row["task"]: row for row in comparison["rows"]}
    assert rows["arc_challenge"] == {"task": "arc_challenge", "a": 55.0, "b": None}
    assert rows["mmlu_average"] == {"task": "mmlu_average", "a": 40.0, "b": 30.0}
