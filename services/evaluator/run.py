"""Evaluate a model without the queue and print the results table.

``python -m services.evaluator.run --model <folder|name|hub id> --tasks leaderboard|a,b
[--num-fewshot N | task=N,...] [--limit N] [--data-dir DIR] [--output results.json]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import ValidationError

from services.evaluator.harness import EvalError, EvalPlan, run_plan
from services.evaluator.results import format_table
from shared.cli import SettingsParser
from shared.evals import LEADERBOARD, EvalRequest, resolve_model
from shared.logging_setup import configure_logging
from shared.paths import AllowedRoots
from shared.settings import CommonSettings, EvaluatorSettings


def parse_fewshot(text: str | None) -> int | dict[str, int] | None:
    """``5`` (every task) or ``arc_challenge=25,hellaswag=10``."""
    if text is None:
        return None
    if "=" not in text:
        return int(text)
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {name.strip(): int(value) for name, value in pairs}


def _parser() -> SettingsParser:
    """The evaluator's settings (device, data folder, models folder) as flags, plus the request."""
    cli = SettingsParser(
        __doc__.split("\n\n")[0],
        CommonSettings,
        EvaluatorSettings,
        fields=("models_dir", "log_level", "device", "data_dir"),
        prog="python -m services.evaluator.run",
    )
    parser = cli.parser
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", default=LEADERBOARD, help="'leaderboard' or a,b,c")
    parser.add_argument("--num-fewshot", default=None, help="N or task=N,task=N")
    parser.add_argument("--limit", type=int, default=None, help="samples per task")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--output", type=Path, default=None, help="write table + raw as JSON")
    return cli


def _model_path(model: str, common: CommonSettings) -> str:
    """The operator's own command: any model folder; else a name under MODELS_DIR or a Hub id."""
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        return str(folder.resolve())
    return resolve_model(model, AllowedRoots.of(common))


def main(argv: list[str] | None = None) -> int:
    cli = _parser()
    args = cli.parse(argv)
    common, settings = cli.settings(CommonSettings), cli.settings(EvaluatorSettings)
    configure_logging("evaluator", common.log_level, common, to_file=False)
    try:
        request = EvalRequest(
            model=args.model,
            tasks=LEADERBOARD if args.tasks == LEADERBOARD else args.tasks.split(","),
            num_fewshot=parse_fewshot(args.num_fewshot),
            limit=args.limit,
            batch_size=args.batch_size,
            device=settings.device,
            dtype=args.dtype,
            data_dir=settings.data_dir or None,
        )
        model_path = _model_path(request.model, common)
    except (ValidationError, ValueError) as exc:
        cli.parser.error(str(exc))
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
