"""Harness output -> the leaderboard's numbers, as the original's ``results_parser.py`` printed
them (x100: ``acc_norm`` for ARC, HellaSwag and MMLU; ``mc2`` for TruthfulQA), plus the MMLU
average the original left to the reader and the four-benchmark leaderboard average.
"""

from __future__ import annotations

from typing import Any

from shared.evals import MMLU_PREFIX, TRUTHFULQA_TASK

# Preferred metric first; the harness's MMLU only reports acc (equal to acc_norm there, since
# every choice is one letter long).
METRIC_PREFERENCE = ("acc_norm", "acc", "exact_match", "mc2")


def _metric_of(task: str, values: dict[str, Any]) -> tuple[str, float] | None:
    numbers = {
        key.split(",")[0]: value
        for key, value in values.items()
        if "," in key and "_stderr" not in key and isinstance(value, int | float)
    }
    if task.startswith("truthfulqa_mc2") and "acc" in numbers:
        return "mc2", float(numbers["acc"])  # the harness names TruthfulQA's mc2 score acc
    for metric in METRIC_PREFERENCE:
        if metric in numbers:
            return metric, float(numbers[metric])
    if numbers:
        metric = sorted(numbers)[0]
        return metric, float(numbers[metric])
    return None


def summarize(raw: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """``{"tasks": [{task, metric, value, num_fewshot, samples}], "mmlu_average",
    "leaderboard_average"}``; values x100, rounded to 2 decimals."""
    rows = []
    for task in order:
        values = raw.get("results", {}).get(task)
        found = _metric_of(task, values) if values else None
        if found is None:
            continue
        metric, value = found
        rows.append(
            {
                "task": task,
                "metric": metric,
                "value": round(value * 100, 2),
                "num_fewshot": raw.get("n-shot", {}).get(task),
                "samples": raw.get("n-samples", {}).get(task, {}).get("effective"),
            }
        )
    by_task = {row["task"]: row["value"] for row in rows}
    mmlu = [value for task, value in by_task.items() if task.startswith(MMLU_PREFIX)]
    mmlu_average = round(sum(mmlu) / len(mmlu), 2) if mmlu else None
    parts = [by_task.get("arc_challenge"), by_task.get("hellaswag"), mmlu_average]
    parts.append(by_task.get(TRUTHFULQA_TASK))
    leaderboard = round(sum(parts) / 4, 2) if all(p is not None for p in parts) else None
    return {"tasks": rows, "mmlu_average": mmlu_average, "leaderboard_average": leaderboard}


def format_table(table: dict[str, Any]) -> str:
    """Plain-text table for the CLI."""
    lines = [f"{'task':<48} {'metric':<9} {'shots':>5} {'n':>6} {'value':>7}"]
    for row in table["tasks"]:
        shots = "" if row["num_fewshot"] is None else row["num_fewshot"]
        samples = "" if row["samples"] is None else row["samples"]
        lines.append(
            f"{row['task']:<48} {row['metric']:<9} {shots!s:>5} {samples!s:>6} {row['value']:>7.2f}"
        )
    for key in ("mmlu_average", "leaderboard_average"):
        if table.get(key) is not None:
            lines.append(f"{key:<48} {'':<9} {'':>5} {'':>6} {table[key]:>7.2f}")
    return "\n".join(lines)


def format_side_by_side(comparison: dict[str, Any]) -> str:
    """Plain-text table of ``shared.evals.side_by_side``: one column per model."""
    models = comparison["models"]
    width = max([12, *(len(m) for m in models)])
    lines = [f"{'task':<48} " + " ".join(f"{m:>{width}}" for m in models)]
    for row in comparison["rows"]:
        cells = [
            f"{'-':>{width}}" if row.get(m) is None else f"{row[m]:>{width}.2f}" for m in models
        ]
        lines.append(f"{row['task']:<48} " + " ".join(cells))
    return "\n".join(lines)
