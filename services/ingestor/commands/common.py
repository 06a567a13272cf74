"""What the ingestor's commands share: flags derived from ``IngestorSettings`` (INGEST_* sets
their defaults) under the original's spellings too, the ``--datasets`` argument, progress lines
and the per-stage table."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

from shared.cli import SettingsParser
from shared.datasets import ALL_SOURCES, DATASET_SOURCE_KEYS
from shared.logging_setup import configure_logging
from shared.settings import IngestorSettings, default_model_dir

log = logging.getLogger("services.ingestor")

# Other spellings of the settings' flags: the original's (underscores) and earlier ones.
SPELLINGS = {
    "--download_directory": "--download-dir",
    "--download-directory": "--download-dir",
    "--tokenizer_path": "--tokenizer-path",
    "--model-name-or-path": "--tokenizer-path",
    "--max_length": "--max-length",
    "--keep_lang": "--keep-lang",
    "--skip_lang": "--skip-lang",
    "--reduce_rep": "--reduce-rep",
}

# The settings that shape a dataset (the merge and run commands).
DATASET_SETTINGS = (
    "tokenizer_path",
    "max_length",
    "keep_lang",
    "skip_lang",
    "reduce_rep",
    "seed",
    "workers",
)


def command_parser(description: str, prog: str, fields: Collection[str]) -> SettingsParser:
    """A parser with a flag for each of the settings ``fields`` the command uses."""
    flags = {f"--{name.replace('_', '-')}" for name in fields}
    aliases = {old: new for old, new in SPELLINGS.items() if new in flags}
    return SettingsParser(description, IngestorSettings, aliases=aliases, prog=prog, fields=fields)


def parse_command(
    cli: SettingsParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, IngestorSettings]:
    """The command's own arguments and its settings; logging is set up once they are valid."""
    args = cli.parse(argv)
    settings = cli.settings(IngestorSettings)
    configure_logging("ingestor", to_file=False)
    return args, settings


def add_datasets_argument(parser: argparse.ArgumentParser) -> None:
    keys = [*DATASET_SOURCE_KEYS, ALL_SOURCES]
    parser.add_argument(
        "--datasets",
        nargs="+",
        required=True,
        choices=keys,
        metavar="DATASET",
        help=f"one or more of: {' '.join(keys)}",
    )


def dataset_options(settings: IngestorSettings) -> dict[str, Any]:
    """The DATASET_SETTINGS by name (IngestSpec's fields), the tokenizer resolved: the
    configured one, else the embedded default model's."""
    options = settings.model_dump(include=set(DATASET_SETTINGS))
    options["tokenizer_path"] = settings.tokenizer_path or str(default_model_dir())
    return options


class ProgressPrinter:
    """progress(stage, done, total) callback that logs at most every few seconds per stage."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last.get(stage, 0.0) < self.every:
            return
        self._last[stage] = now
        of_total = f"/{total}" if total is not None else ""
        log.info("event=progress stage=%s done=%d%s", stage, done, of_total)


def dropped_text(dropped: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none"


def print_stage_table(stages: dict) -> None:
    for stage, counts in stages.items():
        dropped = dropped_text(counts["dropped"])
        print(f"  {stage:<8} in={counts['in']:<8} kept={counts['kept']:<8} dropped: {dropped}")
