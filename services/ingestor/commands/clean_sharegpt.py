"""Clean a ShareGPT HTML dump into markdown conversations (the original's ``clean_sharegpt``).

``python -m services.ingestor.clean_sharegpt --in-file sharegpt_html.json --out-file
sharegpt_clean.json [--begin N] [--end M]``: every sample goes through the pipeline's ShareGPT
cleaner (``formats/sharegpt.py``, via the convert stage's ``convert_task`` in worker processes):
statuses ``too_short``, ``wrong_format``, ``blocked_words``, ``parser_error`` skip a sample, then
duplicates by id and by (first reply, number of turns) are skipped, in input order. The input is
read as a stream and the output written as the original's indent-2 list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from services.ingestor.commands.common import command_parser, dropped_text, parse_command
from services.ingestor.commands.data_cli import (
    DataInputError,
    SlicedRecords,
    add_file_flags,
    add_slice_flags,
    atomic_json_list,
    check_in_file,
    check_slice,
)
from services.ingestor.files.writers import JsonListWriter
from services.ingestor.formats import SHAREGPT
from services.ingestor.formats.converters import ConvertTask, convert_task
from services.ingestor.formats.records import derived_uuid4
from services.ingestor.formats.sharegpt import ShareGPTDeduplicator
from services.ingestor.stages.parallel import ordered_map
from shared.cli import fail

HELP = "clean a ShareGPT HTML dump into markdown conversations"
DEFAULT_OUT = "sharegpt_clean.json"


def _tasks(records: SlicedRecords, seed: int) -> Iterator[ConvertTask]:
    name = records.path.name
    for index, record in enumerate(records):
        record_id = derived_uuid4(seed, name, records.begin + index)
        yield ConvertTask(SHAREGPT, str(records.path), record_id, record)


def clean_file(
    records: SlicedRecords, writer: JsonListWriter, workers: int | None, seed: int
) -> Counter[str]:
    """Clean ``records`` into ``writer``; the counts by outcome (``kept`` or the skip reason)."""
    counts: Counter[str] = Counter()
    dedup = ShareGPTDeduplicator()
    with ordered_map(workers) as map_fn:
        for outcome in map_fn(convert_task, _tasks(records, seed)):
            reason = outcome.reason
            if reason is None and outcome.dedup_keys is not None:
                reason = dedup.duplicate_reason(outcome.dedup_keys)
            if reason is None:
                writer.write_item(outcome.item_json)
                counts["kept"] += 1
            else:
                counts[reason] += 1
    return counts


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    cli = command_parser(
        __doc__.split("\n\n")[0],
        prog or "python -m services.ingestor.clean_sharegpt",
        ("workers", "seed"),
    )
    add_file_flags(cli.parser, DEFAULT_OUT)
    add_slice_flags(cli.parser)
    cli.parser.add_argument("--debug", action="store_true", help="accepted; no effect")
    args, settings = parse_command(cli, argv)
    try:
        check_slice(args.begin, args.end)
        check_in_file(args.in_file)
        records = SlicedRecords(args.in_file, args.begin, args.end)
        with atomic_json_list(args.out_file) as writer:
            counts = clean_file(records, writer, settings.workers, settings.seed)
    except DataInputError as exc:
        return fail(exc)
    kept = counts.pop("kept", 0)
    total = kept + sum(counts.values())
    print(f"total: {total}, skip: {total - kept}, new: {kept}, skipped: {dropped_text(counts)}")
    print(f"Saving to {args.out_file}")
    return 0
