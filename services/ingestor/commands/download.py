"""``python -m services.ingestor.download --download_directory datasets --datasets ai_society ...``

Downloads the chosen Hub datasets (spec §1.2) into the folder and extracts their archives there.
A dataset that cannot be downloaded is reported and the others go on; exit status 1 if any
failed.
"""

from __future__ import annotations

import argparse

from services.ingestor.cli_common import (
    add_datasets_argument,
    add_download_dir_argument,
)
from services.ingestor.download_stage import fetch_source
from services.ingestor.quarantine import RejectedLog
from services.ingestor.sources import resolve_sources
from shared.logging_setup import configure_logging
from shared.settings import ingestor_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_datasets_argument(parser)
    add_download_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    folder = args.download_directory
    folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    with RejectedLog(folder / "rejected.jsonl", append=True) as rejected:
        for source in resolve_sources(args.datasets):
            fetched = fetch_source(source, folder, rejected, ingestor_settings().http_timeout)
            if fetched.counts.dropped:
                failed += 1
                reasons = ", ".join(fetched.counts.dropped)
                print(f"{source.name} could not be downloaded ({reasons}; see rejected.jsonl)")
            else:
                print(f"{source.name}: " + ", ".join(str(r) for r in fetched.roots))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingestor.download", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("ingestor")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
