"""Delta weights, both ways: ``make`` (target - base) and ``apply`` (base + delta).

``python -m services.model_tools.delta make --base B --target T --delta D [--hub-repo-id ID]``
``python -m services.model_tools.delta apply --base B --delta D --target T``

The original subtracted in fp16, which rounds: base + delta then misses the target. Here the
delta is kept one precision wider than the target (fp16/bf16 -> fp32, fp32 -> fp64), and
``make`` checks that applying it gives the target back bit for bit before it saves anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from shared.cli import fail

log = logging.getLogger(__name__)

DELTA_INFO = "delta_info.json"


class DeltaError(Exception):
    """Base and target (or delta) do not fit together; the message says which tensor."""


def _wider(dtype: Any) -> Any:
    import torch

    return torch.float64 if dtype in (torch.float32, torch.float64) else torch.float32


def _load(path: Path, dtype: Any = None) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype} if dtype is not None else {"dtype": "auto"}
    return AutoModelForCausalLM.from_pretrained(path, low_cpu_mem_usage=True, **kwargs)


def _pairs(model: Any, other: Any) -> list[tuple[str, Any, Any]]:
    theirs = dict(other.named_parameters())
    pairs = []
    for name, param in model.named_parameters():
        if name not in theirs:
            raise DeltaError(f"parameter {name} is missing from the base model")
        if theirs[name].shape != param.shape:
            raise DeltaError(
                f"parameter {name}: shape {tuple(param.shape)} vs base {tuple(theirs[name].shape)}"
            )
        pairs.append((name, param, theirs[name]))
    return pairs


def _add(delta: Any, base: Any, target_dtype: Any) -> dict[str, Any]:
    """base + delta in the delta's precision, cast to the target's dtype."""
    return {
        name: (d.data + b.data.to(d.dtype)).to(target_dtype) for name, d, b in _pairs(delta, base)
    }


def make_delta(base_path: Path, target_path: Path, delta_path: Path) -> list[str]:
    """Writes the delta model and the target's tokenizer; returns the tensors that would not
    round-trip exactly (empty: all exact; then the delta is saved, else nothing is)."""
    import torch
    from transformers import AutoTokenizer

    target = _load(target_path)
    target_dtype = next(target.parameters()).dtype
    wide = _wider(target_dtype)
    base = _load(base_path, wide)
    delta = _load(target_path, wide)
    with torch.no_grad():
        for _, d, b in _pairs(delta, base):
            d.sub_(b)
    rebuilt = _add(delta, base, target_dtype)
    target_params = dict(target.named_parameters())
    inexact = [name for name, t in rebuilt.items() if not torch.equal(t, target_params[name])]
    if inexact:
        return inexact
    delta.save_pretrained(delta_path, safe_serialization=True)
    AutoTokenizer.from_pretrained(target_path).save_pretrained(delta_path)
    info = {"target_dtype": str(target_dtype).removeprefix("torch."), "base": base_path.name}
    (delta_path / DELTA_INFO).write_text(json.dumps(info, indent=2))
    return []


def apply_delta(base_path: Path, delta_path: Path, target_path: Path) -> None:
    """Rebuilds the target: base + delta, saved in the target's original dtype."""
    import torch
    from transformers import AutoTokenizer

    info_file = delta_path / DELTA_INFO
    if not info_file.is_file():
        raise DeltaError(f"{delta_path} is not a delta made by this tool (no {DELTA_INFO})")
    target_dtype = getattr(torch, json.loads(info_file.read_text())["target_dtype"])
    delta = _load(delta_path)
    base = _load(base_path, next(delta.parameters()).dtype)
    with torch.no_grad():
        for name, value in _add(delta, base, target_dtype).items():
            delta.get_parameter(name).data = value
    delta.config.dtype = target_dtype
    delta.save_pretrained(target_path, safe_serialization=True)
    AutoTokenizer.from_pretrained(delta_path).save_pretrained(target_path)


def _push(delta_path: Path, repo_id: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(delta_path), repo_id=repo_id)


def _make(args: argparse.Namespace) -> int:
    inexact = make_delta(args.base, args.target, args.delta)
    if inexact:
        return fail(
            f"base + delta would not reproduce {len(inexact)} tensors exactly "
            f"(first: {inexact[0]}); nothing was saved",
            1,
        )
    print(f"delta saved to {args.delta}; base + delta reproduces the target exactly")
    if args.hub_repo_id:
        _push(args.delta, args.hub_repo_id)
        print(f"pushed to {args.hub_repo_id}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    apply_delta(args.base, args.delta, args.target)
    print(f"target rebuilt in {args.target}")
    return 0


def _add_model_paths(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--base``/``--target``/``--delta``, also under the original's ``--<name>-model-path``
    (``--delta-path`` for the delta)."""
    for name in names:
        original = "--delta-path" if name == "delta" else f"--{name}-model-path"
        parser.add_argument(f"--{name}", original, type=Path, required=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="delta = target - base")
    _add_model_paths(make, "base", "target", "delta")
    make.add_argument("--hub-repo-id", default=None)
    apply = commands.add_parser("apply", help="target = base + delta")
    _add_model_paths(apply, "base", "delta", "target")
    args = parser.parse_args(argv)
    try:
        return _make(args) if args.command == "make" else _apply(args)
    except DeltaError as exc:
        return fail(exc, 2)


if __name__ == "__main__":
    sys.exit(main())
