"""Rewrite a checkpoint in half precision: ``python -m services.model_tools.to_half
--in-checkpoint IN --out-checkpoint OUT [--dtype float16|bfloat16]`` loads the model in that dtype
(low CPU memory) with its tokenizer and saves both to OUT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.cli import exit_status


class NotAModelError(Exception):
    """The input folder holds no model."""


def to_half(source: Path, target: Path, dtype: str = "float16") -> None:
    """Model and tokenizer of ``source`` saved to ``target`` with weights in ``dtype``."""
    if not (source / "config.json").is_file():
        raise NotAModelError(f"{source} is not a model folder (no config.json)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=getattr(torch, dtype), low_cpu_mem_usage=True
    )
    tokenizer = AutoTokenizer.from_pretrained(source)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-checkpoint", "--in_checkpoint", type=Path, required=True)
    parser.add_argument("--out-checkpoint", "--out_checkpoint", type=Path, required=True)
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    args = parser.parse_args(argv)

    def run() -> str:
        to_half(args.in_checkpoint, args.out_checkpoint, args.dtype)
        return f"saved {args.dtype} checkpoint to {args.out_checkpoint}"

    return exit_status(run, NotAModelError)


if __name__ == "__main__":
    sys.exit(main())
