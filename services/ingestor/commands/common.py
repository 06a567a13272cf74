"""Arguments and output shared by the ingestor's commands (the original's flag spellings are
accepted beside ours, e.g. ``--download_directory`` and ``--download-directory``)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from services.ingestor.sources import ALL, SOURCE_KEYS
from shared.settings import ingestor_settings

log = logging.getLogger("services.ingestor")


def add_datasets_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datasets",
        nargs="+",
        required=True,
        choices=[*SOURCE_KEYS, ALL],
        metavar="DATASET",
        help=f"one or more of: {' '.join(SOURCE_KEYS)} {ALL}",
    )


def add_download_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--download_directory",
        "--download-directory",
        dest="download_directory",
        type=Path,
        default=ingestor_settings().download_dir,
        help="folder for raw downloads, extracted archives and <name>_conv.json files",
    )


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=ingestor_settings().workers,
        help="processes for conversion and filtering (default: one per CPU core)",
    )


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """Tokenizer, budget, language policy and seed (merge and run)."""
    from services.ingestor.pipeline import default_tokenizer_path

    settings = ingestor_settings()
    parser.add_argument(
        "--tokenizer-path",
        "--tokenizer_path",
        "--model-name-or-path",
        dest="tokenizer_path",
        default=default_tokenizer_path(),
        help="tokenizer of the model to train (default: the embedded default model)",
    )
    parser.add_argument(
        "--max-length", "--max_length", dest="max_length", type=int, default=settings.max_length
    )
    parser.add_argument(
        "--keep-lang",
        "--keep_lang",
        dest="keep_lang",
        default=settings.keep_lang,
        help="language code to keep, or 'all' (default: %(default)s)",
    )
    parser.add_argument("--skip-lang", "--skip_lang", dest="skip_lang", default=None)
    parser.add_argument(
        "--reduce-rep",
        "--reduce_rep",
        dest="reduce_rep",
        action="store_true",
        help="drop conversations with a digit repeated 9 times in a row",
    )
    parser.add_argument("--seed", type=int, default=settings.seed, help="shuffle and id seed")
    add_workers_argument(parser)


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


def print_stage_table(stages: dict) -> None:
    for stage, counts in stages.items():
        dropped = ", ".join(f"{k}={v}" for k, v in counts["dropped"].items()) or "none"
        print(f"  {stage:<8} in={counts['in']:<8} kept={counts['kept']:<8} dropped: {dropped}")


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
