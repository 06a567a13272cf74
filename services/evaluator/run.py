"""Evaluate a model without the queue and print the results table.

``python -m services.evaluator.run --model <folder|name|hub id> --tasks leaderboard|a,b
[--num-fewshot N | task=N,...] [--limit N] [--data-dir DIR] [--output results.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from services.evaluator.harness import EvalError, EvalPlan, run_plan
from services.evaluator.results import format_table
from shared.evals import LEADERBOARD, EvalRequest, resolve_model
from shared.logging_setup import configure_logging
from shared.settings import CommonSettings, EvaluatorSettings


def parse_fewshot(text: str | None) -> int | dict[str, int] | None:
    """``5`` (every task) or ``arc_challenge=25,hellaswag=10``."""
    if text is None:
        return None
    if "=" not in text:
        return int(text)
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {name.strip(): int(value) for name, value in pairs}


def main(argv: list[str] | None = None) -> int:
    settings = EvaluatorSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", default=LEADERBOARD, help="'leaderboard' or a,b,c")
    parser.add_argument("--num-fewshot", default=None, help="N or task=N,task=N")
    parser.add_argument("--limit", type=int, default=None, help="samples per task")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default=settings.device, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--data-dir", default=settings.data_dir or None)
    parser.add_argument("--models-dir", type=Path, default=CommonSettings().models_dir)
    parser.add_argument("--output", type=Path, default=None, help="write table + raw as JSON")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging("evaluator", args.log_level)
    try:
        request = EvalRequest(
            model=args.model,
            tasks=LEADERBOARD if args.tasks == LEADERBOARD else args.tasks.split(","),
            num_fewshot=parse_fewshot(args.num_fewshot),
            limit=args.limit,
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
            data_dir=args.data_dir,
        )
        model_path = resolve_model(request.model, args.models_dir)
    except (ValidationError, ValueError) as exc:
        parser.error(str(exc))
    plan = EvalPlan.from_request(request, model_path, settings)

    def progress(state: dict) -> None:
        if state["current_task"]:
            done, total = state["completed_tasks"], state["total_tasks"]
            print(f"[{done + 1}/{total}] {state['current_task']}", file=sys.stderr, flush=True)

    try:
        table, raw = run_plan(plan, progress)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(table))
    if args.output:
        args.output.write_text(json.dumps({"results": table, "raw": raw}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
