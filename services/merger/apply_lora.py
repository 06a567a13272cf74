"""Merge a LoRA adapter into its base model: the original's ``apply_lora`` command, verified.

    python -m services.merger.apply_lora --base-model-path B --target-model-path T --lora-path A
        [--dtype auto|bf16|fp16|fp32] [--overwrite] [--max-shard-size 5GB] [--tolerance X]

Prints a line per phase and the verification figure; exits 1 with the reason on errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from services.merger.errors import MergeCancelled, MergeError
from services.merger.merge import MergeOptions, merge_lora


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.merger.apply_lora",
        description="Merge a LoRA adapter into its base model and save the merged model.",
    )
    parser.add_argument("--base-model-path", required=True, help="folder of the base model")
    parser.add_argument("--target-model-path", required=True, help="folder to create")
    parser.add_argument("--lora-path", required=True, help="folder of the PEFT LoRA adapter")
    parser.add_argument(
        "--dtype",
        choices=["auto", "bf16", "fp16", "fp32"],
        default="auto",
        help="weights of the merged model (auto: the base's saved dtype, fp32 if unset)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target")
    parser.add_argument("--max-shard-size", default="5GB", help="safetensors shard size")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="largest relative logit error accepted (default: per dtype)",
    )
    return parser


def _print_progress(event: dict) -> None:
    print(f"[{event['step']}/{event['steps']}] {event['message']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = MergeOptions(
        dtype=args.dtype,
        overwrite=args.overwrite,
        max_shard_size=args.max_shard_size,
        tolerance=args.tolerance,
    )
    try:
        result = merge_lora(
            args.base_model_path,
            args.lora_path,
            args.target_model_path,
            options,
            on_progress=_print_progress,
        )
    except MergeError as exc:
        print(f"merge failed: {exc.message}", file=sys.stderr)
        return 1
    except (MergeCancelled, KeyboardInterrupt):
        print("merge cancelled; nothing was written", file=sys.stderr)
        return 130
    check = result["verification"]
    print(
        f"verified: relative error {check['relative_error']:.3g} "
        f"(tolerance {check['tolerance']:.3g}, {result['dtype']})"
    )
    print(f"merged model saved to {result['output_dir']}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
