"""``python -m services.ingestor.convert --download_directory datasets --datasets ...``

Converts downloaded datasets (spec §1.3) into ``<folder>/<name>_conv.json``. Nothing is
downloaded here: a dataset missing from the folder is reported (exit status 1) and the others go
on.
"""

from __future__ import annotations

import argparse

from services.ingestor.cli_common import (
    add_datasets_argument,
    add_download_dir_argument,
    add_workers_argument,
)
from services.ingestor.convert_stage import convert_source
from services.ingestor.download_stage import locate_hub_dataset
from services.ingestor.parallel import ordered_map
from services.ingestor.quarantine import RejectedLog
from services.ingestor.sources import resolve_sources
from shared.logging_setup import configure_logging
from shared.settings import ingestor_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_datasets_argument(parser)
    add_download_dir_argument(parser)
    add_workers_argument(parser)
    parser.add_argument(
        "--seed", type=int, default=ingestor_settings().seed, help="seed of the generated ids"
    )


def run(args: argparse.Namespace) -> int:
    folder = args.download_directory
    missing = 0
    with (
        RejectedLog(folder / "rejected.jsonl", append=True) as rejected,
        ordered_map(args.workers) as map_fn,
    ):
        for source in resolve_sources(args.datasets):
            print(f"Processing {source.name}...")
            located = locate_hub_dataset(source, folder, rejected)
            if located is None:
                missing += 1
                print(f"{source.name}: not found in {folder} (run the download command first)")
                continue
            result = convert_source(
                source.name,
                located.roots,
                folder,
                forced_format=source.format,
                seed=args.seed,
                map_fn=map_fn,
                rejected=rejected,
            )
            dropped = ", ".join(f"{k}={v}" for k, v in sorted(result.counts.dropped.items()))
            print(
                f"{result.path}: {result.counts.kept} conversations "
                f"(read {result.counts.received}; dropped: {dropped or 'none'})"
            )
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingestor.convert", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("ingestor")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
