"""Keep or drop conversations by language, optionally those with long digit runs (the original's
``optional_clean``).

``python -m services.ingestor.optional_clean --in-file sharegpt_clean.json [--out-file F]
[--keep-lang all|en|..] [--skip-lang fr] [--reduce-rep]``: the pipeline's filter stage
(``stages/filter.py``: the offline py3langid detector on the start of each conversation, and
``(\\d)\\1{8}`` for ``--reduce-rep``), on a stream. As in the original, ``--keep-lang`` defaults
to ``all`` here and cannot be combined with ``--skip-lang``; the default output name is
``sharegpt_clean[_<keep>][_skip_<lang>][_reduce_rep].json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.ingestor.commands.common import command_parser, dropped_text, parse_command
from services.ingestor.commands.data_cli import (
    DataInputError,
    SlicedRecords,
    add_file_flags,
    atomic_json_list,
    check_in_file,
)
from services.ingestor.rules.language import ALL, LanguagePolicy
from services.ingestor.stages.counts import Tally
from services.ingestor.stages.filter import filter_units
from services.ingestor.stages.parallel import ordered_map
from shared.cli import fail

HELP = "keep or drop conversations by language (and digit repetition)"


def default_out_file(keep_lang: str, skip_lang: str | None, reduce_rep: bool) -> Path:
    """The original's: ``sharegpt_clean`` + ``_<keep>`` + ``_skip_<lang>`` + ``_reduce_rep``."""
    name = "sharegpt_clean"
    if keep_lang != ALL:
        name += f"_{keep_lang}"
    if skip_lang is not None:
        name += f"_skip_{skip_lang}"
    if reduce_rep:
        name += "_reduce_rep"
    return Path(name + ".json")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    cli = command_parser(
        __doc__.split("\n\n")[0], prog or "python -m services.ingestor.optional_clean", ("workers",)
    )
    add_file_flags(cli.parser, None)
    parser = cli.parser
    parser.add_argument("--keep-lang", "--keep_lang", dest="keep_lang", default=ALL)
    parser.add_argument("--skip-lang", "--skip_lang", dest="skip_lang", default=None)
    parser.add_argument("--reduce-rep", "--reduce_rep", dest="reduce_rep", action="store_true")
    args, settings = parse_command(cli, argv)
    if args.keep_lang != ALL and args.skip_lang is not None:
        return fail("--keep-lang and --skip-lang cannot be used together")
    policy = LanguagePolicy(args.keep_lang, args.skip_lang, args.reduce_rep)
    out_file = args.out_file or default_out_file(args.keep_lang, args.skip_lang, args.reduce_rep)
    tally = Tally("filter")
    try:
        check_in_file(args.in_file)
        records = SlicedRecords(args.in_file)
        with ordered_map(settings.workers) as map_fn, atomic_json_list(out_file) as writer:
            for record in filter_units(records.units(), args.in_file.name, policy, map_fn, tally):
                writer.write(record)
    except DataInputError as exc:
        return fail(exc)
    counts = tally.finish()
    print(f"return {counts.kept} out of {counts.received}, dropped: {dropped_text(counts.dropped)}")
    print(f"Saving to {out_file}")
    return 0
