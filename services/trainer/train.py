"""Train without the job queue: ``python -m services.trainer.train --base-model M --data-path D``.

Every hyperparameter of a fine-tuning job is a flag (``--learning-rate``, ``--lora-r`` ...);
``--preset NAME`` starts from one of the original's recipes (``services.trainer.presets``) and
explicit flags override it. Multi-GPU and multi-node runs go through accelerate:
``accelerate launch --config_file scripts/train/configs/<preset>.yaml -m services.trainer.train
--preset <preset> ...`` (see ``scripts/train/``). Re-running with the same ``--output-dir``
resumes from the newest complete checkpoint. Exit status: 0 done, 1 training error (the message
is printed), 130 cancelled by SIGINT/SIGTERM (nothing more is saved).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import types
import typing
from pathlib import Path
from typing import Any

from shared.training import FineTuneRequest, Hyperparameters

EXIT_TRAINING_ERROR = 1
EXIT_CANCELLED = 130


def _flag_type(annotation: Any) -> tuple[Any, list[Any] | None]:
    """(converter, choices) for a Hyperparameters field annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return type(args[0]), list(args)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _flag_type(args[0])
    return annotation, None


def _add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyperparameters (default: the preset's, else the job's)")
    for name, info in Hyperparameters.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if name == "lora_target_modules":
            group.add_argument(flag, nargs="+", metavar="MODULE", help="or: all-linear")
        elif info.annotation is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            converter, choices = _flag_type(info.annotation)
            group.add_argument(flag, type=converter, choices=choices, default=None)


def build_parser() -> argparse.ArgumentParser:
    from services.trainer.presets import PRESETS

    parser = argparse.ArgumentParser(
        prog="python -m services.trainer.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--base-model", help="local model folder (or Hub id)")
    parser.add_argument("--data-path", help="conversation-format .json or .jsonl")
    parser.add_argument("--validation-path", default=None)
    parser.add_argument("--validation-split", type=float, default=None)
    parser.add_argument("--output-dir", type=Path, help="the job folder (resumes if it has one)")
    parser.add_argument("--method", choices=["full", "lora", "qlora"], default=None)
    parser.add_argument("--template", choices=["auto", "vicuna_v1.1", "chat_template"])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument(
        "--padding",
        choices=["pack", "longest", "max_length"],
        default=None,
        help="default: pack (longest with --no-packing)",
    )
    parser.add_argument("--save-total-limit", type=int, default=None, help="checkpoints to keep")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-presets", action="store_true")
    parser.add_argument(
        "--request-file",
        type=Path,
        default=None,
        help="a fine-tuning job request as JSON (instead of the flags below)",
    )
    parser.add_argument(
        "--events-file",
        type=Path,
        default=None,
        help="also append every event as a JSON line here (main process only)",
    )
    _add_hyperparameter_flags(parser)
    return parser


def request_from_args(args: argparse.Namespace) -> tuple[FineTuneRequest, int | None]:
    """The job request (and the checkpoint limit) for parsed flags."""
    from services.trainer.presets import PRESETS

    hyperparameters = {}
    for name in Hyperparameters.model_fields:
        value = getattr(args, name)
        if value is not None:
            if name == "lora_target_modules" and value == ["all-linear"]:
                value = "all-linear"
            hyperparameters[name] = value
    fields: dict[str, Any] = {"hyperparameters": hyperparameters}
    for field, flag in (
        ("model", "base_model"),
        ("training_file", "data_path"),
        ("validation_file", "validation_path"),
        ("validation_split", "validation_split"),
        ("method", "method"),
        ("template", "template"),
        ("seed", "seed"),
    ):
        if getattr(args, flag) is not None:
            fields[field] = getattr(args, flag)
    limit = args.save_total_limit
    if args.preset:
        preset = PRESETS[args.preset]
        limit = limit if limit is not None else preset.save_total_limit
        return preset.request(**fields), limit
    return FineTuneRequest(**fields), limit if limit is not None else 3


def _print_event(event: dict[str, Any], write: Any) -> None:
    kind = event["type"]
    if kind == "message":
        write(f"[{event['level']}] {event['message']}")
    elif kind == "checkpoint":
        write(f"[checkpoint] step {event['step']}: {event['path']}")
    elif kind == "metrics":
        data = event["data"]
        parts = [f"step {data['step']}"]
        if "eval_loss" in data:
            parts.append(f"eval_loss {data['eval_loss']:.4f}")
        else:
            parts += [
                f"loss {data['loss']:.4f}",
                f"lr {data['learning_rate']:.3g}",
                f"{data['tokens_per_s']:.0f} tok/s",
                f"eta {data['eta_s']:.0f}s",
            ]
        write("[metrics] " + ", ".join(parts))


def _request_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple:
    """(FineTuneRequest, checkpoints to keep) from --request-file or the flags."""
    from pydantic import ValidationError

    if args.request_file is not None:
        if args.output_dir is None:
            parser.error("--output-dir is required")
        try:
            request = FineTuneRequest.model_validate_json(args.request_file.read_text())
        except (OSError, ValidationError) as exc:
            parser.error(f"--request-file: {exc}")
        return request, args.save_total_limit if args.save_total_limit is not None else 3
    if not (args.base_model and args.data_path and args.output_dir):
        parser.error("--base-model, --data-path and --output-dir are required")
    try:
        return request_from_args(args)
    except ValidationError as exc:
        parser.error(str(exc))


def _stop_on_signals() -> list[int]:
    """SIGTERM and SIGINT stop the run after the current step; the list says whether one came."""
    stop_requested: list[int] = []

    def request_stop(signum: int, frame: Any) -> None:
        print(f"signal {signum}: stopping after this step", file=sys.stderr, flush=True)
        stop_requested.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop_requested


def _event_printer(events_path: Path | None) -> Any:
    """Prints each event above the progress bar, and appends it to ``events_path`` if given."""
    from tqdm.auto import tqdm

    events_file = events_path.open("a") if events_path else None

    def on_event(event: dict[str, Any]) -> None:
        _print_event(event, tqdm.write)
        if events_file is not None:
            events_file.write(json.dumps(event) + "\n")
            events_file.flush()

    return on_event


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from services.trainer.job import TrainingOptions

    if args.list_presets:
        from services.trainer.presets import main as list_presets

        list_presets([])
        return 0
    request, save_total_limit = _request_from(parser, args)
    options = TrainingOptions(
        precision=args.precision,
        padding=args.padding,
        save_total_limit=save_total_limit,
        progress=not args.no_progress,
    )
    return run_request(request, args.output_dir, options, args.events_file)


def run_request(
    request: FineTuneRequest, output_dir: Path, options: Any, events_file: Path | None
) -> int:
    """Run one job in this process (as a queued job runs), printing its events; the exit status.
    Shared with the original's command lines (``train_mem``, ``train_qlora``)."""
    from services.trainer.job import TrainingError, run_training

    stop_requested = _stop_on_signals()
    try:
        result = run_training(
            request,
            output_dir,
            on_event=_event_printer(events_file),
            should_stop=lambda: bool(stop_requested),
            options=options,
        )
    except TrainingError as exc:
        print(f"training failed: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_TRAINING_ERROR
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps(result, indent=2), flush=True)
    return EXIT_CANCELLED if result["status"] == "cancelled" else 0


if __name__ == "__main__":
    sys.exit(main())
