"""The training loop: transformers' Trainer, told how we count tokens and how a request maps to it.

Everything else (optimizer, scheduler, gradient accumulation, clipping, checkpoint save and
resume with RNG and data position, FSDP/DeepSpeed through accelerate) is the Trainer's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from services.trainer.chunked_loss import causal_lm_parts, chunked_causal_lm_loss
from services.trainer.heap import release_free_heap
from services.trainer.model_setup import Precision
from shared.training import FineTuneRequest, Hyperparameters


@dataclass(frozen=True)
class TrainingOptions:
    """Settings outside the request: how and where to run, rather than what to learn.

    ``precision``: auto | fp32 | bf16 | fp16 (auto: bf16 where the hardware has it).
    ``padding``: "pack" (default when the request's ``packing`` is on), "longest" (one sample
    per row, padded to the batch's longest), or "max_length" (every row padded to max_length,
    the original's way; the benchmark's baseline).
    ``save_total_limit``: checkpoints kept (None keeps all).
    ``progress``: a tqdm bar on stderr (the CLI).
    ``checkpoint_path``: adapter weights to start from (the original QLoRA script's flag), loaded
    into the LoRA model before training.
    ``load_weights``: False resumes the newest checkpoint's optimizer, scheduler, step and data
    position without its model weights (the original's ``QLoRA_Trainer`` fix; pair it with
    ``checkpoint_path``).
    ``trainer_arguments``: further ``TrainingArguments`` given on the original's command line
    (``--fsdp``, ``--tf32``, ``--optim`` ...), applied over the ones a request maps to.
    """

    precision: str = "auto"
    padding: str | None = None
    save_total_limit: int | None = 3
    progress: bool = False
    checkpoint_path: str | None = None
    load_weights: bool = True
    trainer_arguments: dict[str, Any] = field(default_factory=dict)
    # A transformers attention implementation ("sdpa", "eager") instead of the automatic choice
    # (benchmarks: the original's padded baseline ran transformers' own SDPA).
    attention: str | None = None
    # The loss over trained positions in checkpointed chunks (``chunked_loss``); False: the
    # model's own loss over full logits (the original's).
    chunked_loss: bool = True


class CamelTrainer(Trainer):
    """Counts real (non-padding) tokens, which the collator reports as ``real_tokens``.

    The count lives in ``state.num_input_tokens_seen``, so it is checkpointed and resumed.
    With ``load_weights = False`` a resume leaves the model's weights as they were loaded.
    """

    load_weights: bool = True
    chunked_loss: bool = True
    trim_heap: bool = True

    def training_step(self, model: Any, inputs: dict, num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.trim_heap and self.args.device.type == "cpu":
            release_free_heap()  # the step's activations are free now (see heap.py)
        return loss

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        if self.load_weights:
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        real_tokens = inputs.pop("real_tokens", None)
        if real_tokens is not None and model.training:
            count = torch.as_tensor(real_tokens, device=self.args.device, dtype=torch.int64)
            self.state.num_input_tokens_seen += int(self.accelerator.gather(count).sum().item())
        parts = self._chunked_loss_parts(model, inputs, return_outputs)
        if parts is not None:
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            with self.accelerator.autocast():
                return chunked_causal_lm_loss(*parts, inputs, labels, num_items_in_batch)
        return super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )

    def _chunked_loss_parts(self, model: Any, inputs: dict, return_outputs: bool) -> Any:
        """(decoder, head) when the chunked loss applies: training one process without
        DeepSpeed/FSDP (their wrappers must run the forward), transformers' own loss, labels."""
        if not (self.chunked_loss and model.training and not return_outputs):
            return None
        if "labels" not in inputs or self.label_smoother or self.compute_loss_func:
            return None
        if self.accelerator.num_processes != 1 or self.is_deepspeed_enabled:
            return None
        if self.is_fsdp_enabled:
            return None
        return causal_lm_parts(self.accelerator.unwrap_model(model))


def optimizer_name(method: str) -> str:
    """paged_adamw_32bit for QLoRA on CUDA (the original's), plain AdamW elsewhere."""
    if method == "qlora" and torch.cuda.is_available():
        return "paged_adamw_32bit"
    return "adamw_torch"


def _join_deepspeed_group() -> None:
    """On CPU (gloo) transformers sets up torch.distributed but not DeepSpeed's own group, so
    ZeRO-3's ``zero.Init`` at model load would see a world of one and reject the batch sizes;
    on GPUs transformers calls this itself."""
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")


def build_training_args(
    request: FineTuneRequest,
    hp: Hyperparameters,
    checkpoints_dir: Path,
    precision: Precision,
    has_eval: bool,
    options: TrainingOptions,
) -> TrainingArguments:
    """TrainingArguments for a resolved request (``hp = request.hyperparameters.resolved``)."""
    eval_steps = hp.eval_steps if has_eval else None
    extra: dict[str, Any] = {}
    # Under `accelerate launch --config_file <deepspeed yaml>` hand the same JSON to the Trainer
    # too, so that it fills the "auto" values from these arguments.
    ds_config = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" and ds_config:
        extra["deepspeed"] = ds_config
    if hp.gradient_checkpointing:
        extra["activation_checkpointing"] = True
        extra["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    arguments: dict[str, Any] = dict(
        output_dir=str(checkpoints_dir),
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        num_train_epochs=hp.n_epochs,
        max_steps=hp.max_steps or -1,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        warmup_steps=hp.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        optim=optimizer_name(request.method),
        logging_strategy="steps",
        logging_steps=hp.logging_steps,
        save_strategy="steps",
        save_steps=hp.save_steps,
        save_total_limit=options.save_total_limit,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        prediction_loss_only=True,  # never gather [batch, length, vocab] logits in eval
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        seed=request.seed,
        data_seed=request.seed,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="no",  # CamelTrainer counts real tokens itself
        ddp_find_unused_parameters=False if request.method != "full" else None,
        **extra,
    )
    arguments.update(options.trainer_arguments)
    args = TrainingArguments(**arguments)
    if "deepspeed" in extra and not torch.cuda.is_available():
        _join_deepspeed_group()
    return args
