"""Fine-tuning job requests and records: the contract between the controller and the trainer.

Modelled on OpenAI's fine-tuning jobs API (``/v1/fine_tuning/jobs``), with the methods and
hyperparameters of the original's training scripts. Pure data: no torch here.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

JOB_KIND = "fine_tuning_job"
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled")
Method = Literal["full", "lora", "qlora"]
Template = Literal["auto", "vicuna_v1.1", "chat_template"]

# QLoRA's defaults are the original's script (r=64, alpha=16, dropout 0.05, grad norm 0.3).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": {"learning_rate": 2e-5},
    "lora": {"learning_rate": 2e-4, "lora_r": 8, "lora_alpha": 16},
    "qlora": {"learning_rate": 1e-4, "lora_r": 64, "lora_alpha": 16, "max_grad_norm": 0.3},
}


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_epochs: float = Field(3.0, gt=0)
    learning_rate: float | None = Field(None, gt=0)  # None: the method's default
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    batch_size: int = Field(4, ge=1)  # sequences (or packed rows) per device per step
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=16)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)  # None: the method's default (1.0)
    max_steps: int | None = Field(None, ge=1)
    save_steps: int = Field(200, ge=1)
    eval_steps: int | None = Field(None, ge=1)
    logging_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    packing: bool = True
    lora_r: int | None = Field(None, ge=1)
    lora_alpha: float | None = Field(None, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    # "all-linear": every linear layer except the output head (the original's QLoRA choice).
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    # The original's --lazy_preprocess: each conversation is tokenized when training reads it
    # (only its length is kept up front), so data memory does not grow with the dataset.
    lazy_preprocess: bool = False
    # The original QLoRA script's caps: the seeded permutation is cut to max_samples before the
    # train/eval split, the evaluation set to max_eval_samples after it.
    max_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    # --max_memory_MB: the most memory the base model may take on each device when it is loaded.
    max_memory_mb: int | None = Field(None, ge=1)

    def resolved(self, method: Method) -> Hyperparameters:
        """Fill the fields left to the method's defaults."""
        defaults = METHOD_DEFAULTS[method]
        updates = {
            name: defaults.get(name, fallback)
            for name, fallback in (
                ("learning_rate", 2e-5),
                ("max_grad_norm", 1.0),
                ("lora_r", 8),
                ("lora_alpha", 16.0),
            )
            if getattr(self, name) is None
        }
        return self.model_copy(update=updates)


class FineTuneRequest(BaseModel):
    """Body of ``POST /v1/fine_tuning/jobs``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="base model: local folder or Hub id")
    training_file: str = Field(min_length=1, description="dataset id (ds-...) or a file path")
    validation_file: str | None = None
    validation_split: float = Field(0.02, ge=0, lt=0.5)
    method: Method = "lora"
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    template: Template = "auto"
    seed: int = Field(0, ge=0)
    suffix: str | None = Field(None, max_length=64)
    merge: bool = False
    # One of shared.training_presets.PRESETS, applied by the controller (its settings are
    # already in the other fields); the trainer launches with the preset's accelerate config.
    preset: str | None = None
    gpus: int = Field(0, ge=0, description="GPUs the job needs (0: any worker, CPU included)")
    metadata: dict[str, str] | None = None

    @model_validator(mode="after")
    def _method_fits(self) -> FineTuneRequest:
        if self.method == "full" and self.hyperparameters.lora_r is not None:
            raise ValueError("hyperparameters.lora_r only applies to method lora or qlora")
        return self


def model_context_length(model: str) -> int | None:
    """Context length from a local model folder's config.json (None if unknown)."""
    try:
        config = Path(model).expanduser() / "config.json"
        if not config.is_file():
            return None
    except (OSError, RuntimeError, ValueError):  # an unknown ~user, a NUL byte
        return None
    data = json.loads(config.read_text())
    for key in ("max_sequence_length", "max_position_embeddings", "n_positions", "seq_length"):
        if isinstance(data.get(key), int):
            return data[key]
    return None


def new_job_id() -> str:
    return f"ftjob-{uuid.uuid4().hex[:20]}"


def new_job_record(job_id: str, request: FineTuneRequest, output_dir: str) -> dict[str, Any]:
    """The ``fine_tuning.job`` object, as OpenAI shapes it, plus our own fields."""
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": int(time.time()),
        "model": request.model,
        "status": "validating_files",
        "training_file": request.training_file,
        "validation_file": request.validation_file,
        "method": request.method,
        "hyperparameters": request.hyperparameters.resolved(request.method).model_dump(),
        "seed": request.seed,
        "suffix": request.suffix,
        "metadata": request.metadata,
        "fine_tuned_model": None,
        "finished_at": None,
        "estimated_finish": None,
        "trained_tokens": None,
        "result_files": [],
        "error": None,
        "output_dir": output_dir,
        "request": request.model_dump(),
        "cancel_requested": False,
    }


def job_event(
    message: str, level: str = "info", kind: str = "message", data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``fine_tuning.job.event`` as OpenAI shapes it (``EventLog`` adds id and time)."""
    return {
        "object": "fine_tuning.job.event",
        "level": level,
        "type": kind,
        "message": message,
        "data": data,
    }
