"""``python -m services.ingestor <command> ...``: run | download | convert | merge.

``run`` does all stages at once on any mix of dataset keys, local paths and URLs. Each command
is a ``(help, add_arguments, run)`` entry of COMMANDS, so a new one (e.g. a Celery ``worker``)
is one more line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from services.ingestor import convert, download, merge
from services.ingestor.cli_common import (
    ProgressPrinter,
    add_dataset_options,
    fail,
    print_stage_table,
)
from services.ingestor.pipeline import IngestError, IngestSpec, run_pipeline
from shared.logging_setup import configure_logging
from shared.settings import ingestor_settings


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sources",
        "--datasets",
        dest="sources",
        nargs="+",
        required=True,
        metavar="SOURCE",
        help="dataset keys (ai_society code math physics chemistry biology sharegpt alpaca "
        "all), local files or folders, http(s) URLs",
    )
    parser.add_argument(
        "--work-dir",
        "--work_dir",
        dest="work_dir",
        type=Path,
        default=ingestor_settings().download_dir,
        help="folder for intermediate files and the dataset (default: %(default)s)",
    )
    parser.add_argument(
        "--download-dir",
        "--download_directory",
        dest="download_dir",
        type=Path,
        default=ingestor_settings().download_dir,
        help="Hub downloads, shared between runs (default: %(default)s)",
    )
    add_dataset_options(parser)


def run_all(args: argparse.Namespace) -> int:
    spec = IngestSpec(
        sources=args.sources,
        tokenizer_path=args.tokenizer_path,
        max_length=args.max_length,
        keep_lang=args.keep_lang,
        skip_lang=args.skip_lang,
        reduce_rep=args.reduce_rep,
        seed=args.seed,
        workers=args.workers,
    )
    try:
        manifest = run_pipeline(
            spec, args.work_dir, ProgressPrinter(), download_dir=args.download_dir
        )
    except ValueError as exc:
        return fail(str(exc), 2)
    except IngestError as exc:
        return fail(str(exc))
    print_stage_table(manifest["stages"])
    print(
        f"{manifest['records']} samples in {args.work_dir / manifest['files']['dataset_jsonl']} "
        f"(sha256 {manifest['sha256']}); {manifest['rejected']} rejected; "
        f"manifest: {args.work_dir / 'manifest.json'}"
    )
    return 0


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO")


def run_worker(args: argparse.Namespace) -> int:
    """The ingestor service: a Celery worker on queue ``ingest`` (one build at a time; each
    build uses every core itself)."""
    from services.ingestor.tasks import app
    from shared.celery_app import INGEST_QUEUE, run_worker

    run_worker(app, [INGEST_QUEUE], "ingestor", args.log_level)
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: dict[str, Command] = {
    "run": ("download, convert, filter, split and merge in one go", add_run_arguments, run_all),
    "download": ("download Hub datasets", download.add_arguments, download.run),
    "convert": ("convert downloaded datasets", convert.add_arguments, convert.run),
    "merge": ("filter, split and merge *_conv.json files", merge.add_arguments, merge.run),
    "worker": (
        "serve dataset builds from the Celery queue `ingest`",
        add_worker_arguments,
        run_worker,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.ingestor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("ingestor")
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
