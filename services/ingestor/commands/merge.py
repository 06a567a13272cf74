"""Filter, split to the token budget and shuffle every ``*_conv.json`` of a folder into one
dataset.

``python -m services.ingestor.merge --in-directory datasets --out-file dataset.json
--tokenizer-path <tokenizer> --max-length 2048`` (the original's command line) writes
``dataset.json`` (the original's indent-2 list), ``dataset.jsonl`` and ``manifest.json`` into the
same folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.ingestor.commands.common import (
    DATASET_SETTINGS,
    command_parser,
    dataset_options,
    parse_command,
    print_stage_table,
)
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.pipeline import (
    DatasetBuild,
    IngestSpec,
    build_dataset,
    load_tokenizer,
    write_manifest,
)
from services.ingestor.rules.tokens import TurnTokenCounter
from services.ingestor.stages.parallel import ordered_map
from shared.cli import fail

HELP = "filter, split and merge *_conv.json files"
CONV_SUFFIXES = ("_conv.json", "_conv.jsonl")


def conv_files_in(folder: Path) -> list[tuple[str, Path]]:
    """``(source name, path)`` of every conv file, named after the file (``code_conv.json``)."""
    found = []
    for path in sorted(folder.iterdir()):
        for suffix in CONV_SUFFIXES:
            if path.is_file() and path.name.endswith(suffix):
                found.append((path.name[: -len(suffix)] or path.stem, path))
    return found


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    cli = command_parser(
        __doc__.split("\n\n")[0], prog or "python -m services.ingestor.merge", DATASET_SETTINGS
    )
    cli.parser.add_argument(
        "--in-directory", "--in_directory", dest="in_directory", type=Path, required=True
    )
    cli.parser.add_argument("--out-file", "--out_file", dest="out_file", default="dataset.json")
    args, settings = parse_command(cli, argv)
    folder = args.in_directory
    if not folder.is_dir():
        return fail(f"{folder} is not a folder", 1)
    conv_files = conv_files_in(folder)
    if not conv_files:
        return fail(f"no *_conv.json file in {folder} (run the convert command first)", 1)
    options = dataset_options(settings)
    try:
        counter = load_tokenizer(options["tokenizer_path"])
    except ValueError as exc:
        return fail(exc, 2)
    manifest = _merge(conv_files, folder, args.out_file, IngestSpec([], **options), counter)
    manifest["spec"] = {"in_directory": str(folder), "out_file": args.out_file, **options}
    write_manifest(folder, manifest)
    for name, path in conv_files:
        count = manifest["sources"][name]["stages"]["filter"]["in"]
        print(f"{path} has {count} conversations.")
    print_stage_table(manifest["stages"])
    print(f"Saving to {folder / args.out_file} ({manifest['records']} samples)")
    return 0


def _merge(
    conv_files: list[tuple[str, Path]],
    folder: Path,
    out_file: str,
    spec: IngestSpec,
    counter: TurnTokenCounter,
) -> dict:
    with (
        RejectedLog(folder / "rejected.jsonl", append=True) as rejected,
        ordered_map(spec.workers) as map_fn,
    ):
        build = DatasetBuild(counter, spec.max_length, spec.policy, spec.seed, map_fn, rejected)
        return build_dataset(conv_files, folder, build, json_name=out_file)
