"""One fine-tuning job, start to finish: the function the job queue (and the CLI) calls.

``output_dir`` layout: ``checkpoints/checkpoint-<step>/`` (resumable), ``tensorboard/``,
``final/`` (the model, or the LoRA adapter, plus tokenizer and ``camel_training.json``), and
``result.json`` once the job succeeded. Calling ``run_training`` again on the same folder
resumes from the newest complete checkpoint, or returns the recorded result if it had finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, set_seed

from services.trainer import checkpoints, varlen_attention
from services.trainer.callbacks import (
    CancelOnRequest,
    CheckpointOnSchedule,
    EventReporter,
    ProgressBar,
    stop_agreed,
)
from services.trainer.data import DataOptions, PreparedData, prepare_data
from services.trainer.errors import TrainingError
from services.trainer.lazy import LazySamples
from services.trainer.loop import CamelTrainer, TrainingOptions, build_training_args
from services.trainer.model_setup import (
    attention_implementation,
    check_model_folder,
    load_adapter_weights,
    load_model,
    load_tokenizer,
    resolve_precision,
    tokenizer_has_chat_template,
)
from services.trainer.packing import PackedCollator, PackedRows, PaddedCollator, SingleSamples
from services.trainer.rendering import template_name_for, training_conversation
from shared.contracts import CHAT_TEMPLATE, TRAINING_SUMMARY_FILE
from shared.training import FineTuneRequest, model_context_length

__all__ = ["TrainingError", "TrainingOptions", "run_training", "validate_request"]

RESULT_FILE = "result.json"
OOM_HINT = (
    "Try a smaller batch_size (with more gradient_accumulation_steps to keep the global batch), "
    "a shorter max_length, method qlora, or gradient_checkpointing."
)


def validate_request(request: FineTuneRequest) -> list[tuple[str, str]]:
    """(field, message) for problems found from files alone, without loading any weights."""
    errors: list[tuple[str, str]] = []
    hp = request.hyperparameters
    try:
        check_model_folder(request.model)
    except TrainingError as exc:
        errors.append(("model", exc.message))
    context = model_context_length(request.model)
    if context is not None and hp.max_length > context:
        errors.append(
            (
                "hyperparameters.max_length",
                f"{hp.max_length} is longer than the context of {request.model} ({context})",
            )
        )
    if request.method == "full":
        for name, default in (("lora_target_modules", "all-linear"), ("lora_alpha", None)):
            if getattr(hp, name) != default:
                errors.append((f"hyperparameters.{name}", "only applies to method lora or qlora"))
    elif isinstance(hp.lora_target_modules, list) and not hp.lora_target_modules:
        errors.append(("hyperparameters.lora_target_modules", "names no module"))
    if request.method != "qlora" and hp.bits != 4:
        errors.append(("hyperparameters.bits", "only applies to method qlora"))
    if request.template == CHAT_TEMPLATE and tokenizer_has_chat_template(request.model) is False:
        errors.append(("template", f"the tokenizer of {request.model} has no chat template"))
    if request.method == "qlora":
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            errors.append(("method", "qlora needs bitsandbytes, which is not installed"))
    return errors


def run_training(
    request: FineTuneRequest,
    output_dir: Path,
    on_event: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    options: TrainingOptions | None = None,
) -> dict[str, Any]:
    """Train, checkpoint, resume if there is a checkpoint, and publish ``final/``.

    Raises ``TrainingError`` for failures the user can act on. Returns the result dict
    (``status`` succeeded or cancelled); a cancelled job writes nothing more.
    """
    run = _TrainingRun(request, Path(output_dir), on_event, should_stop, options)
    recorded = _recorded_result(run.output_dir)
    if recorded is not None:
        run.message("info", "this job already finished; returning its recorded result")
        return recorded
    problems = validate_request(request)
    if problems:
        raise TrainingError("; ".join(f"{field}: {text}" for field, text in problems))
    return run.train()


class _TrainingRun:
    """One call of ``run_training``: the process group, the event channel and the phases."""

    def __init__(
        self,
        request: FineTuneRequest,
        output_dir: Path,
        on_event: Callable[[dict], None] | None,
        should_stop: Callable[[], bool] | None,
        options: TrainingOptions | None,
    ) -> None:
        from accelerate import PartialState

        self.request = request
        self.output_dir = output_dir
        self.options = options or TrainingOptions()
        # The same process group the Trainer will use (on CPU: gloo between processes, if any).
        self.process = PartialState(cpu=not torch.cuda.is_available())
        self.is_main = self.process.is_main_process
        self._emit = (on_event or (lambda event: None)) if self.is_main else (lambda event: None)
        self.stop = should_stop or (lambda: False)
        self.hp = request.hyperparameters.resolved(request.method)
        self.checkpoints_dir = output_dir / "checkpoints"

    def message(self, level: str, text: str) -> None:
        self._emit({"type": "message", "level": level, "message": text})

    def train(self) -> dict[str, Any]:
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            checkpoints.clear_staging(self.output_dir)
        precision = resolve_precision(self.options.precision)
        attention = self.options.attention or attention_implementation()
        tokenizer, template_name, data = self._prepare_data()
        padding = self.options.padding or ("pack" if self.hp.packing else "longest")
        train_set, eval_set, collator = _datasets(
            data, padding, self.hp.max_length, tokenizer, attention
        )
        self.message("info", _data_summary(data, train_set, padding, self.hp.max_length))
        if stop_agreed(self.stop):
            return _cancelled(data, 0, 0)
        # Arguments before the model: under DeepSpeed ZeRO-3 they make loading partition the
        # weights across processes instead of each process holding the whole model.
        args = build_training_args(
            self.request,
            self.hp,
            self.checkpoints_dir,
            precision,
            eval_set is not None,
            self.options,
        )
        if padding == "longest":
            args.train_sampling_strategy = "group_by_length"
        model = self._load_model(precision, attention)
        resume = self._resume_point()
        cancel = CancelOnRequest(self.stop)
        trainer = CamelTrainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=collator,
            callbacks=self._callbacks(cancel),
        )
        trainer.remove_callback(PrinterCallback)  # our events replace its printed log dicts
        trainer.load_weights = self.options.load_weights
        trainer.chunked_loss = self.options.chunked_loss
        return self._fit(trainer, resume, cancel, data, (tokenizer, template_name))

    def _prepare_data(self) -> tuple[Any, str, PreparedData]:
        request = self.request
        tokenizer = load_tokenizer(request.model)
        template_name = template_name_for(
            request.model, bool(getattr(tokenizer, "chat_template", None)), request.template
        )
        try:
            template = training_conversation(template_name, tokenizer)
        except ValueError as exc:
            raise TrainingError(f"template {template_name}: {exc}") from exc
        self.message("info", f"rendering conversations with the {template_name} template")
        data = prepare_data(
            request.training_file,
            request.validation_file,
            request.validation_split,
            request.seed,
            template,
            tokenizer,
            self.hp.max_length,
            self.message,
            DataOptions(
                lazy=self.hp.lazy_preprocess,
                max_samples=self.hp.max_samples,
                max_eval_samples=self.hp.max_eval_samples,
                scratch_dir=self.output_dir,
            ),
        )
        return tokenizer, template_name, data

    def _load_model(self, precision: str, attention: str) -> Any:
        request = self.request
        set_seed(request.seed)  # LoRA's initial weights come from the global RNG
        try:
            model = load_model(request.model, request.method, self.hp, precision, attention)
        except (torch.OutOfMemoryError, MemoryError) as exc:
            raise TrainingError(f"out of memory loading {request.model}. {OOM_HINT}") from exc
        if self.options.checkpoint_path:
            path = load_adapter_weights(model, request.method, self.options.checkpoint_path)
            self.message("info", f"restarting from the adapter weights in {path}")
        self.message(
            "info", f"method {request.method}, {precision} precision, {attention} attention"
        )
        return model

    def _callbacks(self, cancel: CancelOnRequest) -> list[Any]:
        reporter = EventReporter(self._emit, self.output_dir / "tensorboard")
        callbacks: list[Any] = [CheckpointOnSchedule(), reporter, cancel]
        if self.options.progress:
            callbacks.append(ProgressBar())
        return callbacks

    def _resume_point(self) -> Path | None:
        if self.is_main:
            for path in checkpoints.discard_incomplete_checkpoints(self.checkpoints_dir):
                self.message("warn", f"removed incomplete checkpoint {path.name}")
        self.process.wait_for_everyone()
        resume = checkpoints.newest_complete_checkpoint(self.checkpoints_dir)
        if resume is not None:
            step = checkpoints.checkpoint_step(resume)
            self.message("info", f"resuming from {resume.name} (step {step})")
        return resume

    def _fit(
        self,
        trainer: CamelTrainer,
        resume: Path | None,
        cancel: CancelOnRequest,
        data: PreparedData,
        rendering: tuple[Any, str],
    ) -> dict[str, Any]:
        """Train (from ``resume`` if given), then save ``final/`` and the result."""
        tokenizer, template_name = rendering
        if stop_agreed(self.stop):
            return _cancelled(data, trainer.state.global_step, 0)
        started = time.monotonic()
        try:
            output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not _is_out_of_memory(exc):
                raise
            step = trainer.state.global_step
            raise TrainingError(f"out of memory at step {step}. {OOM_HINT}") from exc
        state = trainer.state
        if cancel.cancelled:
            self.message("info", f"cancelled at step {state.global_step}")
            return _cancelled(data, state.global_step, state.num_input_tokens_seen)
        metrics = _final_metrics(trainer, output.training_loss)
        metrics["train_runtime_s"] = time.monotonic() - started
        final_dir = _save_final(
            trainer, tokenizer, self.request, template_name, self.output_dir, self.is_main
        )
        result = {
            "status": "succeeded",
            "final_dir": str(final_dir),
            "trained_tokens": int(state.num_input_tokens_seen),
            "steps": int(state.global_step),
            "lost_samples": data.lost_samples,
            "total_samples": data.total_samples,
            "metrics": metrics,
        }
        if self.is_main:
            (self.output_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
            self.message("info", f"finished: {state.global_step} steps, final model in {final_dir}")
        return result


def _final_metrics(trainer: CamelTrainer, training_loss: float) -> dict[str, Any]:
    state = trainer.state
    metrics: dict[str, Any] = {"train_loss": training_loss}
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    if losses:
        metrics["final_loss"] = losses[-1]
    if trainer.eval_dataset is not None:
        evals = [e for e in state.log_history if "eval_loss" in e]
        if evals and evals[-1].get("step") == state.global_step:
            metrics["eval_loss"] = evals[-1]["eval_loss"]
        else:
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    return metrics


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return "out of memory" in str(exc) or "can't allocate memory" in str(exc)


# Attention that reads sample boundaries from position_ids: a batch becomes one packed row.
FLATTENING_ATTENTION = ("flash_attention_2", varlen_attention.NAME)


def _datasets(
    data: PreparedData, padding: str, max_length: int, tokenizer: Any, attention: str
) -> tuple[Any, Any, Any]:
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    if padding == "pack":
        collator: Any = PackedCollator(pad_id, flatten=attention in FLATTENING_ATTENTION)
        train = PackedRows(data.train, max_length, data.train_lengths)
        evaluation = PackedRows(data.eval, max_length, data.eval_lengths) if data.eval else None
        return train, evaluation, collator
    if padding not in ("longest", "max_length"):
        raise TrainingError(f"unknown padding {padding!r}: pack, longest or max_length")
    collator = PaddedCollator(pad_id, pad_to=max_length if padding == "max_length" else None)
    evaluation = SingleSamples(data.eval) if data.eval else None
    return SingleSamples(data.train), evaluation, collator


def _data_summary(data: PreparedData, train_set: Any, padding: str, max_length: int) -> str:
    tokens = sum(data.train_lengths)
    trained = data.trained_tokens
    text = (
        f"{len(data.train)} training and {len(data.eval)} evaluation conversations; "
        f"{tokens} tokens, {trained} of them trained (assistant replies)"
    )
    if isinstance(data.train, LazySamples):
        text += "; tokenized lazily, as training reads them"
    if padding == "pack":
        text += f"; packed into {len(train_set)} rows of up to {max_length} tokens"
        text += f" ({train_set.fill:.0%} full)"
    return text


def _cancelled(data: PreparedData, steps: int, tokens: int) -> dict[str, Any]:
    return {
        "status": "cancelled",
        "final_dir": None,
        "trained_tokens": int(tokens),
        "steps": int(steps),
        "lost_samples": data.lost_samples,
        "total_samples": data.total_samples,
        "metrics": {},
    }


def _recorded_result(output_dir: Path) -> dict[str, Any] | None:
    path = output_dir / RESULT_FILE
    if not path.is_file() or not (output_dir / "final").is_dir():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError:
        return None
    return result if result.get("status") == "succeeded" else None


def _save_final(
    trainer: CamelTrainer,
    tokenizer: Any,
    request: FineTuneRequest,
    template_name: str,
    output_dir: Path,
    is_main: bool,
) -> Path:
    """Model (or adapter) and tokenizer into a staging folder, renamed to ``final/`` when whole."""
    staging = checkpoints.staging_dir(output_dir)
    try:
        trainer.save_model(str(staging))  # every process: FSDP/ZeRO-3 gather the weights
    except BaseException:
        if is_main:
            checkpoints.clear_staging(output_dir)
        raise
    if is_main:
        tokenizer.save_pretrained(str(staging))
        summary = {
            "base_model": request.model,
            "method": request.method,
            "template": template_name,
            "adapter": request.method != "full",
            "steps": trainer.state.global_step,
            "hyperparameters": request.hyperparameters.resolved(request.method).model_dump(),
        }
        (staging / TRAINING_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        final = checkpoints.publish_final(output_dir)
    else:
        final = output_dir / "final"
    trainer.accelerator.wait_for_everyone()
    return final
