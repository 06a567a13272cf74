"""Convert downloaded Hub datasets into ``<folder>/<name>_conv.json`` conversation files.

``python -m services.ingestor.convert --download_directory datasets --datasets ...`` (the
original's command line). Each output is a JSON list of conversation records written with indent
2. Nothing is downloaded here: a dataset missing from the folder is reported (exit status 1) and
the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.ingestor.commands.common import (
    add_datasets_argument,
    command_parser,
    dropped_text,
    parse_command,
)
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.sources import resolve_sources
from services.ingestor.stages.convert import convert_source
from services.ingestor.stages.download import locate_hub_dataset
from services.ingestor.stages.parallel import ordered_map

HELP = "convert downloaded datasets"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    cli = command_parser(
        __doc__.split("\n\n")[0],
        prog or "python -m services.ingestor.convert",
        ("download_dir", "workers", "seed"),
    )
    add_datasets_argument(cli.parser)
    args, settings = parse_command(cli, argv)
    folder: Path = settings.download_dir
    missing = 0
    with (
        RejectedLog(folder / "rejected.jsonl", append=True) as rejected,
        ordered_map(settings.workers) as map_fn,
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
                seed=settings.seed,
                map_fn=map_fn,
                rejected=rejected,
            )
            print(
                f"{result.path}: {result.counts.kept} conversations "
                f"(read {result.counts.received}; dropped: {dropped_text(result.counts.dropped)})"
            )
    return 1 if missing else 0
