"""Download the chosen Hub datasets into the download folder and extract their archives there.

``python -m services.ingestor.download --download_directory datasets --datasets ai_society ...``
(the original's command line). An archive is extracted into ``<folder>/<archive name up to the
first dot>/`` and then deleted. A dataset that cannot be downloaded is reported and the others go
on; exit status 1 if any failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.ingestor.commands.common import add_datasets_argument, command_parser, parse_command
from services.ingestor.files.fetch import UrlFetch
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.sources import resolve_sources
from services.ingestor.stages.download import fetch_source

HELP = "download Hub datasets"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    cli = command_parser(
        __doc__.split("\n\n")[0],
        prog or "python -m services.ingestor.download",
        ("download_dir", "http_timeout"),
    )
    add_datasets_argument(cli.parser)
    args, settings = parse_command(cli, argv)
    folder = settings.download_dir
    folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    with RejectedLog(folder / "rejected.jsonl", append=True) as rejected:
        for source in resolve_sources(args.datasets):
            fetched = fetch_source(source, folder, rejected, UrlFetch.from_settings(settings))
            if fetched.counts.dropped:
                failed += 1
                reasons = ", ".join(fetched.counts.dropped)
                print(f"{source.name} could not be downloaded ({reasons}; see rejected.jsonl)")
            else:
                print(f"{source.name}: " + ", ".join(str(r) for r in fetched.roots))
    return 1 if failed else 0
