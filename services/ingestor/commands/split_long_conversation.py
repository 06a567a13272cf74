"""Split long conversations into samples within a token budget (the original's
``split_long_conversation``).

``python -m services.ingestor.split_long_conversation --in-file sharegpt_clean.json --out-file
sharegpt_split.json --model-name-or-path <tokenizer> [--max-length 2048] [--begin N] [--end M]``:
the pipeline's split stage (``stages/split.py``, rules in ``rules/splitting.py``: a turn costs
its tokens + 6, rounds packed greedily, the trailing chunk kept, a single round over the budget
dropped rather than truncated), on a stream. Records that are not alternating human/gpt
conversations are dropped and counted (the original's ``filter_invalid_roles``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

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
from services.ingestor.formats.records import derived_uuid4, normalized, structure_problem
from services.ingestor.pipeline import load_tokenizer
from services.ingestor.stages.split import SplitCounts, split_records
from shared.cli import fail
from shared.settings import default_model_dir

HELP = "split long conversations to a token budget"
DEFAULT_OUT = "sharegpt_split.json"


def _valid(records: SlicedRecords, counts: SplitCounts) -> Iterator[dict[str, Any]]:
    """Conversation records, normalized; malformed ones are counted as dropped."""
    for index, record in enumerate(records):
        problem = structure_problem(record)
        if problem:
            counts.conversations.drop(problem)
            continue
        yield normalized(record, derived_uuid4(0, records.path.name, records.begin + index))


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    cli = command_parser(
        __doc__.split("\n\n")[0],
        prog or "python -m services.ingestor.split_long_conversation",
        ("tokenizer_path", "max_length"),
    )
    add_file_flags(cli.parser, DEFAULT_OUT)
    add_slice_flags(cli.parser)
    args, settings = parse_command(cli, argv)
    counts = SplitCounts()
    try:
        check_slice(args.begin, args.end)
        check_in_file(args.in_file)
        try:
            counter = load_tokenizer(settings.tokenizer_path or str(default_model_dir()))
        except ValueError as exc:
            raise DataInputError(f"--model-name-or-path: {exc}") from exc
        records = SlicedRecords(args.in_file, args.begin, args.end)
        samples = split_records(_valid(records, counts), counter, settings.max_length, counts)
        with atomic_json_list(args.out_file) as writer:
            for line, _cost in samples:
                writer.write_line(line.decode())
    except DataInputError as exc:
        return fail(exc)
    conversations = counts.conversations
    print(
        f"total: {conversations.received}, new: {counts.samples}, "
        f"dropped: {dropped_text(conversations.dropped)}, "
        f"rounds over --max-length dropped: {counts.rounds.dropped.get('oversized_round', 0)}"
    )
    print(f"Saving to {args.out_file}")
    return 0
