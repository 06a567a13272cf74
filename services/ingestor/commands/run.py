"""Download, convert, filter, split and merge in one go, on any mix of Hub dataset keys, local
files or folders and http(s) URLs.

``python -m services.ingestor run --sources KEY|PATH|URL ... [--work-dir DIR]``. Exit status 2
for a request no run could honour (unknown source, missing path, a tokenizer that cannot be
loaded), 1 when no source could be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.ingestor.commands.common import (
    DATASET_SETTINGS,
    ProgressPrinter,
    command_parser,
    dataset_options,
    parse_command,
    print_stage_table,
)
from services.ingestor.pipeline import IngestError, IngestSpec, run_pipeline
from shared.cli import fail
from shared.datasets import ALL_SOURCES, DATASET_SOURCE_KEYS

HELP = "download, convert, filter, split and merge in one go"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    cli = command_parser(
        __doc__.split("\n\n")[0],
        prog or "python -m services.ingestor run",
        ("download_dir", *DATASET_SETTINGS),
    )
    cli.parser.add_argument(
        "--sources",
        "--datasets",
        dest="sources",
        nargs="+",
        required=True,
        metavar="SOURCE",
        help=f"dataset keys ({' '.join(DATASET_SOURCE_KEYS)} {ALL_SOURCES}), local files or "
        "folders, http(s) URLs",
    )
    cli.parser.add_argument(
        "--work-dir",
        "--work_dir",
        dest="work_dir",
        type=Path,
        help="folder for intermediate files and the dataset (default: the download folder)",
    )
    args, settings = parse_command(cli, argv)
    work_dir = args.work_dir or settings.download_dir
    spec = IngestSpec(sources=args.sources, **dataset_options(settings))
    try:
        manifest = run_pipeline(
            spec, work_dir, ProgressPrinter(), download_dir=settings.download_dir
        )
    except ValueError as exc:
        return fail(exc, 2)
    except IngestError as exc:
        return fail(exc, 1)
    print_stage_table(manifest["stages"])
    print(
        f"{manifest['records']} samples in {work_dir / manifest['files']['dataset_jsonl']} "
        f"(sha256 {manifest['sha256']}); {manifest['rejected']} rejected; "
        f"manifest: {work_dir / 'manifest.json'}"
    )
    return 0
