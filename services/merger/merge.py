"""Merge a LoRA adapter into its base model and publish a plain model folder.

The original's ``apply_lora`` loads the base in fp16, merges, and saves the model with the base
tokenizer. Here, on top of that, what users of merges commonly trip on is handled:

- the base is always loaded unquantized (16-bit or fp32), whatever the adapter was trained on:
  a QLoRA adapter merges into the original base weights, never into 4-bit ones;
- the inputs are checked first (files, architecture and sizes, a quantized base, a taken target);
- the merged model is verified against base + adapter on a probe batch before it is written;
- the folder is written next to the target and renamed into place, so a crash, a full disk or
  a cancel never leaves half a model under the target name.

``merge_lora`` is a plain function: the CLI (``apply_lora``), the Celery task and the tests call it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.merger import inputs, verify
from services.merger.errors import MergeCancelled, MergeError
from services.merger.publish import publish, staging_folder
from shared.contracts import TRAINING_SUMMARY_FILE

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
PHASES = ("check", "load_base", "load_adapter", "merge", "verify", "save", "publish")
# What was merged, how, and how well it verified: written next to the weights.
MERGE_RECORD = "camel_merge.json"


@dataclass
class MergeOptions:
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32
    overwrite: bool = False
    max_shard_size: str = "5GB"
    tolerance: float | None = None  # None: verify.DEFAULT_TOLERANCES for the dtype
    # Written into the folder's MERGE_RECORD, so a re-run of the same merge recognises it.
    merge_id: str | None = None


class _Progress:
    def __init__(
        self, on_progress: Callable[[dict], None] | None, should_stop: Callable[[], bool] | None
    ) -> None:
        self._emit = on_progress or (lambda event: None)
        self._stop = should_stop or (lambda: False)

    def phase(self, phase: str, message: str) -> None:
        """Report the phase starting now; stop here if asked (phases are the cancel points)."""
        if self._stop():
            raise MergeCancelled(f"merge cancelled before {phase}")
        self._emit(
            {
                "type": "progress",
                "phase": phase,
                "step": PHASES.index(phase) + 1,
                "steps": len(PHASES),
                "message": message,
            }
        )


def merge_lora(
    base_model: str | Path,
    adapter: str | Path,
    target: str | Path,
    options: MergeOptions | None = None,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Merge ``adapter`` into ``base_model`` and publish the result as the folder ``target``.

    Raises ``MergeError`` for failures the user can act on and ``MergeCancelled`` when
    ``should_stop`` returned true; in both cases nothing is left at (or next to) ``target``.
    Returns the result: output folder, dtype, verification figure and duration.
    """
    options = options or MergeOptions()
    progress = _Progress(on_progress, should_stop)
    started = time.monotonic()
    adapter_dir, target = Path(adapter).expanduser(), Path(target).expanduser()

    progress.phase("check", f"checking {adapter_dir} against {base_model}")
    plan = _check_inputs(base_model, adapter_dir, target, options)
    progress.phase("load_base", f"loading the base model {plan.base} in {plan.dtype}")
    model = _load_base(plan.base, plan.dtype)
    inputs.check_shapes(plan.info, model)

    progress.phase("load_adapter", f"loading the LoRA adapter {adapter_dir}")
    peft_model = _load_adapter(model, adapter_dir)
    probe = verify.probe_batch(model.config.get_text_config().vocab_size)
    reference = verify.probe_logits(peft_model, probe)

    progress.phase("merge", "merging the LoRA weights into the base weights")
    merged = _fold(peft_model)

    progress.phase("verify", "comparing merged logits with base + adapter logits")
    verification = _verify(merged, probe, reference, plan)
    result = {
        "output_dir": str(target),
        "base_model": str(plan.base),
        "adapter": str(adapter_dir),
        "dtype": plan.dtype,
        "verification": verification,
        "merge_id": options.merge_id,
    }
    error = verification["relative_error"]
    progress.phase("save", f"writing the merged model (relative error {error:.3g})")
    with staging_folder(target) as staging:
        try:
            _write_model_folder(staging, merged, plan.tokenizer, options.max_shard_size)
            (staging / MERGE_RECORD).write_text(json.dumps(result, indent=2))
            _write_training_summary(staging, plan.info, plan.base, plan.dtype, verification)
        except OSError as exc:
            raise MergeError(f"could not write the merged model next to {target}: {exc}") from exc
        progress.phase("publish", f"publishing {target}")
        publish(staging, target, options.overwrite)
    return {**result, "duration_s": round(time.monotonic() - started, 3)}


@dataclass
class _Plan:
    """What the checks found: the base folder, the adapter, the dtype and tokenizer to use."""

    base: Path
    info: Any
    dtype: str
    tolerance: float
    tokenizer: Any


def _check_inputs(
    base_model: str | Path, adapter_dir: Path, target: Path, options: MergeOptions
) -> _Plan:
    """Every check that needs no weights loaded, so a bad merge fails in a second."""
    base = inputs.resolve_base(base_model)
    base_config = inputs.read_base_config(base)
    inputs.check_not_quantized(base, base_config)
    info = inputs.read_adapter(adapter_dir)
    inputs.check_recorded_base(info, base, base_config)
    if target.exists() and not options.overwrite:
        raise MergeError(f"{target} already exists; pass overwrite to replace it")
    if options.dtype not in ("auto", *DTYPE_NAMES):
        raise MergeError(f"unknown dtype {options.dtype!r}: auto, bf16, fp16 or fp32")
    _check_shard_size(options.max_shard_size)
    dtype = inputs.resolve_dtype(options.dtype, base_config)
    tolerance = options.tolerance or verify.DEFAULT_TOLERANCES[dtype]
    tokenizer = _load_tokenizer(info, base)
    inputs.check_tokenizer_fits(tokenizer, base, base_config)
    return _Plan(base, info, dtype, tolerance, tokenizer)


def _verify(merged: Any, probe: Any, reference: Any, plan: _Plan) -> dict[str, Any]:
    """The merged model must give base + adapter's logits within the dtype's tolerance."""
    error = verify.relative_error(verify.probe_logits(merged, probe), reference)
    if not error < plan.tolerance:
        raise MergeError(
            f"verification failed: the merged model's logits differ from base + adapter by a "
            f"relative error of {error:.3g} (tolerance {plan.tolerance:.3g} for {plan.dtype})"
        )
    return {
        "relative_error": error,
        "tolerance": plan.tolerance,
        "probe_tokens": int(probe.numel()),
    }


def published_result(target: str | Path, merge_id: str) -> dict[str, Any] | None:
    """The result of merge ``merge_id`` if it already published ``target`` (a worker that died
    between publishing and reporting leaves exactly this), else None."""
    try:
        result = json.loads((Path(target) / MERGE_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("merge_id") == merge_id else None


def _check_shard_size(size: str) -> None:
    from transformers.utils.hub import convert_file_size_to_int

    try:
        convert_file_size_to_int(size)
    except (ValueError, TypeError):
        raise MergeError(f"max shard size {size!r} is not a size such as 5GB or 500MB") from None


def _load_tokenizer(info: inputs.AdapterInfo, base: Path) -> Any:
    """The adapter's tokenizer (the trainer saves the one it trained with), else the base's;
    the base's chat template when the chosen one has none."""
    from transformers import AutoTokenizer

    source = info.path if info.has_tokenizer else base
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise MergeError(f"could not load the tokenizer from {source}: {exc}") from exc
    if not getattr(tokenizer, "chat_template", None) and source != base:
        try:
            template = getattr(AutoTokenizer.from_pretrained(str(base)), "chat_template", None)
        except (OSError, ValueError):
            template = None
        if template:
            tokenizer.chat_template = template
    return tokenizer


def _load_base(base: Path, dtype: str) -> Any:
    """Unquantized on purpose: merging into 4-bit weights would round the adapter's update away."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(base), dtype=getattr(torch, DTYPE_NAMES[dtype]), low_cpu_mem_usage=True
        )
    except (OSError, ValueError) as exc:
        raise MergeError(f"could not load the base model {base}: {exc}") from exc
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise MergeError(f"out of memory loading {base} in {dtype}; try bf16 or fp16") from exc
    model.eval()
    return model


def _load_adapter(model: Any, adapter: Path) -> Any:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        # What the shape check could not see (e.g. .bin weights): PEFT's size mismatch.
        raise MergeError(f"the adapter {adapter} does not fit the base model: {exc}") from exc


def _fold(peft_model: Any) -> Any:
    """Add each LoRA delta to its base weight and drop the adapter wrappers."""
    return peft_model.merge_and_unload()


def _write_model_folder(folder: Path, model: Any, tokenizer: Any, max_shard_size: str) -> None:
    """Weights (safetensors, sharded), config, generation config and tokenizer: a folder that
    ``AutoModelForCausalLM.from_pretrained`` and the model worker load as is."""
    model.save_pretrained(str(folder), max_shard_size=max_shard_size)
    tokenizer.save_pretrained(str(folder))


def _write_training_summary(
    folder: Path, info: inputs.AdapterInfo, base: Path, dtype: str, verification: dict[str, Any]
) -> None:
    """The trainer's ``camel_training.json`` (serving reads its template), marked as merged."""
    if info.summary is None:
        return
    summary = {
        **info.summary,
        "adapter": False,
        "merged": {
            "base_model": str(base),
            "adapter": str(info.path),
            "dtype": dtype,
            "relative_error": verification["relative_error"],
        },
    }
    (folder / TRAINING_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
