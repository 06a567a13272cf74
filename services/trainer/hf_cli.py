"""The original's training command lines (``train_mem.py``, ``train_qlora.py``), read by
transformers' ``HfArgumentParser`` into the fine-tuning job request the REST API builds.

Every ``TrainingArguments`` flag is accepted, under its own name, plus the original's extras
(``--model_name_or_path``, ``--data_path``, ``--lazy_preprocess``, ``--model_max_length``,
``--cache_dir``, and for QLoRA ``--bits``, ``--lora_r`` ... ``--max_memory_MB``,
``--checkpoint_path``, ``--load_weights``), and the spellings transformers has since dropped
(``--evaluation_strategy``, ``--warmup_ratio``, ``--fsdp_transformer_layer_cls_to_wrap``). What a
request holds goes into a ``FineTuneRequest``; how to run (precision, checkpoints kept, resume
from an adapter) into ``TrainingOptions``; the remaining ``TrainingArguments`` the original's
scripts set (``--fsdp``, ``--tf32``, ``--optim`` ...) are handed to the Trainer as given. Then
``run_training`` runs it, as for a queued job. An unknown flag is an error naming it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from shared.training import FineTuneRequest


@dataclass
class ModelArguments:
    model_name_or_path: str = field(default="facebook/opt-125m")


@dataclass
class DataArguments:
    data_path: str | None = field(default=None, metadata={"help": "conversation .json/.jsonl"})
    eval_data_path: str | None = field(default=None, metadata={"help": "instead of a 2% split"})
    lazy_preprocess: bool = field(default=False, metadata={"help": "tokenize when read"})


@dataclass
class QLoRADataArguments(DataArguments):
    max_samples: int | None = field(default=None, metadata={"help": "cut before the split"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "cut the eval set"})


@dataclass
class TrainingFlags(TrainingArguments):
    """``TrainingArguments``' flags, read as given: nothing is set up (no device, no process
    group) until the job runs, and the arguments are not checked against this machine here."""

    cache_dir: str | None = field(default=None)
    model_max_length: int = field(default=512, metadata={"help": "tokens per sample"})
    evaluation_strategy: str | None = field(default=None, metadata={"help": "= eval_strategy"})
    warmup_ratio: float | None = field(default=None, metadata={"help": "share of steps"})
    fsdp_transformer_layer_cls_to_wrap: str | None = field(default=None)

    def __post_init__(self) -> None:
        """Nothing: ``TrainingArguments.__post_init__`` would claim devices and check the
        hardware (``--tf32`` without a GPU) before we know what the job keeps."""


@dataclass
class QLoRATrainingFlags(TrainingFlags):
    double_quant: bool = field(default=True)
    quant_type: str = field(default="nf4", metadata={"help": "nf4 or fp4"})
    bits: int = field(default=4, metadata={"help": "4, 8 or 16 (16: plain LoRA)"})
    lora_r: int = field(default=64)
    lora_alpha: float = field(default=16)
    lora_dropout: float = field(default=0.0)
    max_memory_MB: int = field(default=80000)
    max_grad_norm: float = field(default=0.3)
    output_dir: str | None = field(default="./output")
    checkpoint_path: str | None = field(default=None, metadata={"help": "adapter to start from"})
    load_weights: bool = field(default=True, metadata={"help": "False: resume without weights"})


class FlagError(ValueError):
    """A flag the job cannot take; the message names it."""


# TrainingArguments a request or the options already express, or that the trainer owns.
MAPPED = {
    "output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio",
    "warmup_steps", "weight_decay", "max_grad_norm", "logging_steps", "save_steps",
    "save_strategy", "eval_steps", "eval_strategy", "evaluation_strategy", "save_total_limit",
    "gradient_checkpointing", "bf16", "fp16", "seed", "resume_from_checkpoint", "cache_dir",
    "model_max_length", "fsdp_transformer_layer_cls_to_wrap", "overwrite_output_dir",
    "do_train", "do_eval", "logging_strategy", "report_to", "disable_tqdm", "data_seed",
    "use_cpu", "remove_unused_columns", "logging_dir", "run_name", "local_rank",
}  # fmt: skip
QLORA_ONLY = {
    "double_quant", "quant_type", "bits", "lora_r", "lora_alpha", "lora_dropout",
    "max_memory_MB", "checkpoint_path", "load_weights",
}  # fmt: skip


def parse(
    argv: Sequence[str], qlora: bool, prog: str | None = None
) -> tuple[Any, Any, Any, set[str]]:
    """(model, data, training) argument dataclasses and the names of the flags given."""
    data_cls = QLoRADataArguments if qlora else DataArguments
    flags_cls = QLoRATrainingFlags if qlora else TrainingFlags
    parser = HfArgumentParser((ModelArguments, data_cls, flags_cls), prog=prog)
    model_args, data_args, flags, rest = parser.parse_args_into_dataclasses(
        list(argv), return_remaining_strings=True
    )
    if rest:
        raise FlagError(f"unknown flag(s) {' '.join(rest)}: not an argument of this trainer")
    given = {arg.lstrip("-").split("=", 1)[0] for arg in argv if arg.startswith("--")}
    return model_args, data_args, flags, given


def _method(flags: Any, qlora: bool) -> str:
    if not qlora:
        return "full"
    if flags.bits not in (4, 8, 16):
        raise FlagError(f"--bits {flags.bits}: choose 4, 8 or 16")
    return "lora" if flags.bits == 16 else "qlora"


def _eval_steps(flags: Any) -> int | None:
    strategy = str(flags.evaluation_strategy or getattr(flags.eval_strategy, "value", "no"))
    strategy = strategy.split(".")[-1].lower()
    if strategy == "no":
        return None
    if strategy != "steps":
        raise FlagError(f"--evaluation_strategy {strategy}: only steps or no")
    return int(flags.eval_steps or flags.logging_steps)


def _save_steps(flags: Any) -> int:
    strategy = str(getattr(flags.save_strategy, "value", flags.save_strategy)).lower()
    if strategy == "no":
        return 2**31 - 1  # no checkpoint before the end
    if strategy != "steps":
        raise FlagError(f"--save_strategy {strategy}: only steps or no")
    return _whole_steps("save_steps", flags.save_steps)


def _whole_steps(name: str, value: float) -> int:
    if value < 1 or value != int(value):
        raise FlagError(f"--{name} {value}: give a whole number of steps")
    return int(value)


def _hyperparameters(flags: Any, data_args: Any, method: str, given: set[str]) -> dict[str, Any]:
    warmup = flags.warmup_ratio if flags.warmup_ratio is not None else flags.warmup_steps
    hp: dict[str, Any] = {
        "n_epochs": flags.num_train_epochs,
        "max_steps": flags.max_steps if flags.max_steps > 0 else None,
        "batch_size": flags.per_device_train_batch_size,
        "gradient_accumulation_steps": flags.gradient_accumulation_steps,
        "learning_rate": flags.learning_rate,
        "lr_scheduler": str(getattr(flags.lr_scheduler_type, "value", flags.lr_scheduler_type)),
        "warmup_ratio": warmup if warmup < 1 else 0.0,
        "weight_decay": flags.weight_decay,
        "max_grad_norm": flags.max_grad_norm,
        "logging_steps": _whole_steps("logging_steps", flags.logging_steps),
        "save_steps": _save_steps(flags),
        "eval_steps": _eval_steps(flags),
        "max_length": flags.model_max_length,
        "gradient_checkpointing": bool(flags.gradient_checkpointing),
        "lazy_preprocess": data_args.lazy_preprocess,
    }
    if isinstance(data_args, QLoRADataArguments):
        hp["max_samples"] = data_args.max_samples
        hp["max_eval_samples"] = data_args.max_eval_samples
    if method != "full":
        hp.update(lora_r=flags.lora_r, lora_alpha=flags.lora_alpha, lora_dropout=flags.lora_dropout)
        hp["max_memory_mb"] = flags.max_memory_MB
    if method == "qlora":
        hp.update(bits=flags.bits, quant_type=flags.quant_type, double_quant=flags.double_quant)
    return hp


def to_job(
    argv: Sequence[str], qlora: bool, prog: str | None = None
) -> tuple[FineTuneRequest, Any, Path, list[str]]:
    """(request, TrainingOptions, output folder, notes on flags left out) for a command line."""
    from pydantic import ValidationError

    from services.trainer.loop import TrainingOptions

    model_args, data_args, flags, given = parse(argv, qlora, prog)
    if not data_args.data_path:
        raise FlagError("--data_path is required")
    if not flags.output_dir:
        raise FlagError("--output_dir is required")
    method = _method(flags, qlora)
    try:
        request = FineTuneRequest(
            model=model_args.model_name_or_path,
            training_file=data_args.data_path,
            validation_file=data_args.eval_data_path,
            method=method,
            seed=flags.seed,
            hyperparameters=_hyperparameters(flags, data_args, method, given),
        )
    except ValidationError as exc:
        raise FlagError(_validation_text(exc)) from exc
    overrides, notes = _trainer_arguments(flags, given)
    options = TrainingOptions(
        precision="bf16" if flags.bf16 else "fp16" if flags.fp16 else "fp32",
        save_total_limit=flags.save_total_limit,
        progress=not flags.disable_tqdm,
        checkpoint_path=getattr(flags, "checkpoint_path", None),
        load_weights=getattr(flags, "load_weights", True),
        trainer_arguments=overrides,
    )
    return request, options, Path(flags.output_dir), notes


def _validation_text(exc: Any) -> str:
    """pydantic's errors under the flag names: ``hyperparameters.max_length`` is
    ``--model_max_length``."""
    names = {"max_length": "model_max_length", "batch_size": "per_device_train_batch_size"}
    names |= {"n_epochs": "num_train_epochs", "lr_scheduler": "lr_scheduler_type"}
    names |= {"max_memory_mb": "max_memory_MB", "model": "model_name_or_path"}
    parts = []
    for error in exc.errors():
        name = str(error["loc"][-1])
        parts.append(f"--{names.get(name, name)}: {error['msg']}")
    return "; ".join(parts)


def _trainer_arguments(flags: Any, given: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The given TrainingArguments no request field holds, for the Trainer as they are, except
    where this machine cannot run them (said in the notes)."""
    import torch

    defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    overrides: dict[str, Any] = {}
    notes: list[str] = []
    for name in sorted(given & set(defaults) - MAPPED - QLORA_ONLY):
        overrides[name] = getattr(flags, name)
    if flags.warmup_ratio is None and flags.warmup_steps >= 1:
        # A step count (the request holds only a ratio): the Trainer takes it as it is.
        overrides["warmup_steps"] = int(flags.warmup_steps)
    if overrides.get("tf32") and not torch.cuda.is_available():
        overrides.pop("tf32")
        notes.append("--tf32: no CUDA GPU here, so it does not apply")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if overrides.get("fsdp"):
        if world < 2:
            overrides.pop("fsdp")
            notes.append("--fsdp: one process (not under torchrun), so nothing to shard")
        elif flags.fsdp_transformer_layer_cls_to_wrap:
            layer = flags.fsdp_transformer_layer_cls_to_wrap
            overrides["fsdp_config"] = {"transformer_layer_cls_to_wrap": [layer]}
    if "cache_dir" in given:
        notes.append("--cache_dir: models are read from their folder (HF_HOME sets the cache)")
    return overrides, notes


def main(argv: Sequence[str] | None, prog: str, qlora: bool) -> int:
    """Parse, say what does not apply, and run the job as ``run_training``; exit 2 on a bad
    flag (named), else the trainer CLI's statuses."""
    from services.trainer.train import run_request

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        flags = QLoRATrainingFlags if qlora else TrainingFlags
        data = QLoRADataArguments if qlora else DataArguments
        HfArgumentParser((ModelArguments, data, flags), prog=prog).print_help()
        return 0
    try:
        request, options, output_dir, notes = to_job(argv, qlora, prog)
    except (FlagError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"[info] {note}", file=sys.stderr)
    return run_request(request, output_dir, options, events_file=None)
