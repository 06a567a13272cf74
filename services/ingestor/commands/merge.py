"""``python -m services.ingestor.merge --in-directory datasets --out-file dataset.json
--tokenizer-path <tokenizer> --max-length 2048``

Filters, splits and shuffles every ``<in-directory>/*_conv.json`` (spec §1.5-1.7) into
``dataset.json`` + ``dataset.jsonl`` + ``manifest.json`` in the same folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.ingestor.cli_common import add_dataset_options, fail, print_stage_table
from services.ingestor.language import LanguagePolicy
from services.ingestor.parallel import ordered_map
from services.ingestor.pipeline import build_dataset, load_tokenizer, write_manifest
from services.ingestor.quarantine import RejectedLog
from shared.logging_setup import configure_logging

CONV_SUFFIXES = ("_conv.json", "_conv.jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--in-directory", "--in_directory", dest="in_directory", type=Path, required=True
    )
    parser.add_argument("--out-file", "--out_file", dest="out_file", default="dataset.json")
    add_dataset_options(parser)


def conv_files_in(folder: Path) -> list[tuple[str, Path]]:
    """``(source name, path)`` of every conv file, named after the file (``code_conv.json``)."""
    found = []
    for path in sorted(folder.iterdir()):
        for suffix in CONV_SUFFIXES:
            if path.is_file() and path.name.endswith(suffix):
                found.append((path.name[: -len(suffix)] or path.stem, path))
    return found


def run(args: argparse.Namespace) -> int:
    folder = args.in_directory
    if not folder.is_dir():
        return fail(f"{folder} is not a folder")
    conv_files = conv_files_in(folder)
    if not conv_files:
        return fail(f"no *_conv.json file in {folder} (run the convert command first)")
    try:
        counter = load_tokenizer(args.tokenizer_path)
    except ValueError as exc:
        return fail(str(exc), 2)
    policy = LanguagePolicy(args.keep_lang, args.skip_lang, args.reduce_rep)
    with (
        RejectedLog(folder / "rejected.jsonl", append=True) as rejected,
        ordered_map(args.workers) as map_fn,
    ):
        manifest = build_dataset(
            conv_files,
            folder,
            counter=counter,
            max_length=args.max_length,
            policy=policy,
            seed=args.seed,
            map_fn=map_fn,
            rejected=rejected,
            json_name=args.out_file,
        )
    manifest["spec"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    manifest["spec"].pop("handler", None)
    write_manifest(folder, manifest)
    for name, path in conv_files:
        count = manifest["sources"][name]["stages"]["filter"]["in"]
        print(f"{path} has {count} conversations.")
    print_stage_table(manifest["stages"])
    print(f"Saving to {folder / args.out_file} ({manifest['records']} samples)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingestor.merge", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("ingestor")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
