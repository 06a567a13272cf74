"""The original's training recipes (its scripts/train_*.sh) as job presets plus accelerate configs.

A preset is a set of ``FineTuneRequest`` overrides (method, GPUs, hyperparameters) and the
``accelerate launch`` config that runs it: FSDP full_shard wrapping LlamaDecoderLayer for the
7B/13B full finetunes, DeepSpeed ZeRO-3 with CPU offload for 30B, one GPU for QLoRA. The configs
are also checked in under ``scripts/train/configs/`` for the Slurm scripts;
``python -m services.trainer.presets --write scripts/train/configs`` regenerates them, and a test
keeps the two identical. Pure data (no torch): the controller applies a job's ``preset`` with
``apply_preset`` and the trainer launches with the preset's config.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.training import FineTuneRequest

CONFIG_DIR = Path("scripts/train/configs")  # relative to the repository root
DEEPSPEED_CONFIG_NAME = "ds_config_zero3_offload.json"

# The original's scripts/ds_config.json, except that ZeRO-3 gathers 16-bit weights on save, so
# the final model is written whole instead of as the original's empty ZeRO partitions.
DEEPSPEED_ZERO3_OFFLOAD: dict[str, Any] = {
    "bf16": {"enabled": "auto"},
    "optimizer": {
        "type": "AdamW",
        "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
    },
    "scheduler": {
        "type": "WarmupDecayLR",
        "params": {
            "total_num_steps": "auto",
            "warmup_min_lr": "auto",
            "warmup_max_lr": "auto",
            "warmup_num_steps": "auto",
        },
    },
    "zero_optimization": {
        "stage": 3,
        "offload_optimizer": {"device": "cpu", "pin_memory": True},
        "offload_param": {"device": "cpu", "pin_memory": True},
        "overlap_comm": True,
        "contiguous_gradients": True,
        "sub_group_size": 1_000_000_000,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_max_live_parameters": 1_000_000_000,
        "stage3_max_reuse_distance": 1_000_000_000,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "steps_per_print": 5,
    "wall_clock_breakdown": False,
}

FSDP_LLAMA = {
    "fsdp_version": 1,
    "fsdp_sharding_strategy": "FULL_SHARD",
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
    "fsdp_backward_prefetch": "BACKWARD_PRE",
    "fsdp_forward_prefetch": False,
    "fsdp_offload_params": False,
    # One consolidated state dict on rank 0 (offloaded to CPU), as the original saved.
    "fsdp_state_dict_type": "FULL_STATE_DICT",
    "fsdp_cpu_ram_efficient_loading": True,
    "fsdp_sync_module_states": True,
    "fsdp_use_orig_params": True,
}

# Common to the original's scripts: bf16, 3 epochs, no weight decay, log every step, 2048 tokens.
_COMMON = {"n_epochs": 3.0, "weight_decay": 0.0, "logging_steps": 1, "max_length": 2048}


def accelerate_config(
    distributed_type: str, processes: int, machines: int = 1, **extra: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": distributed_type,
        "num_machines": machines,
        "num_processes": processes,  # in total, over all machines
        "machine_rank": 0,  # the launch scripts pass each node's rank
        "main_training_function": "main",
        "rdzv_backend": "c10d" if machines > 1 else "static",
        "same_network": True,
        "use_cpu": False,
        "debug": False,
    }
    if distributed_type != "DEEPSPEED":  # DeepSpeed takes precision from its own JSON
        config["mixed_precision"] = "bf16"
    config.update(extra)
    return config


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    method: str
    gpus: int
    hyperparameters: dict[str, Any]
    accelerate: dict[str, Any]
    save_total_limit: int | None = None
    deepspeed: dict[str, Any] | None = field(default=None)

    @property
    def global_batch(self) -> int:
        hp = self.hyperparameters
        return hp["batch_size"] * hp["gradient_accumulation_steps"] * self.gpus

    def request(self, **fields: Any) -> FineTuneRequest:
        """A request with this preset's settings; ``fields`` (and their hyperparameters) win."""
        hyperparameters = {**self.hyperparameters, **fields.pop("hyperparameters", {})}
        base = {"method": self.method, "gpus": self.gpus}
        return FineTuneRequest(**{**base, **fields, "hyperparameters": hyperparameters})

    def config_files(self) -> dict[str, str]:
        """File name -> content of the launch configs this preset needs."""
        files = {f"{self.name}.yaml": yaml.safe_dump(self.accelerate, sort_keys=False)}
        if self.deepspeed is not None:
            files[DEEPSPEED_CONFIG_NAME] = json.dumps(self.deepspeed, indent=2) + "\n"
        return files


# What the original's FSDP full-finetune scripts share; each preset adds its batch shape.
_FULL_FSDP = {
    "learning_rate": 2e-5,
    "warmup_ratio": 0.04,
    "lr_scheduler": "cosine",
    "save_steps": 1500,
    "eval_steps": 1500,
    "gradient_checkpointing": True,
}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="camel-7b-full-4gpu",
            description="train_camel_7B.sh: full finetune, 1 node x 4 GPUs, FSDP, global batch 128",
            method="full",
            gpus=4,
            hyperparameters={
                **_COMMON,
                "batch_size": 2,
                "gradient_accumulation_steps": 16,
                **_FULL_FSDP,
            },
            accelerate=accelerate_config("FSDP", 4, fsdp_config=FSDP_LLAMA),
            save_total_limit=8,
        ),
        Preset(
            name="camel-13b-full-8gpu",
            description=(
                "train_camel_13B.sh: full finetune, 1 node x 8 GPUs, FSDP, global batch 128"
            ),
            method="full",
            gpus=8,
            hyperparameters={
                **_COMMON,
                "batch_size": 4,
                "gradient_accumulation_steps": 4,
                **_FULL_FSDP,
            },
            accelerate=accelerate_config("FSDP", 8, fsdp_config=FSDP_LLAMA),
            save_total_limit=8,
        ),
        Preset(
            name="camel-13b-full-2node",
            description=(
                "train_camel_13B_distributed.sh: full finetune, 2 nodes x 4 GPUs, FSDP, "
                "c10d rendezvous at the first node, global batch 128"
            ),
            method="full",
            gpus=8,
            hyperparameters={
                **_COMMON,
                "batch_size": 4,
                "gradient_accumulation_steps": 4,
                **_FULL_FSDP,
            },
            accelerate=accelerate_config("FSDP", 8, machines=2, fsdp_config=FSDP_LLAMA),
            save_total_limit=8,
        ),
        Preset(
            name="camel-30b-full-deepspeed",
            description=(
                "train_camel_30B_distributed_deepspeed.sh: full finetune, 4 nodes x 4 GPUs, "
                "DeepSpeed ZeRO-3 with CPU offload, global batch 128"
            ),
            method="full",
            gpus=16,
            hyperparameters={
                **_COMMON,
                "batch_size": 1,
                "gradient_accumulation_steps": 8,
                "learning_rate": 2e-5,
                "warmup_ratio": 0.04,
                "lr_scheduler": "linear",  # the original gave none; DeepSpeed's WarmupDecayLR
                "save_steps": 200,
                "eval_steps": 200,
                "gradient_checkpointing": False,
            },
            accelerate=accelerate_config(
                "DEEPSPEED",
                16,
                machines=4,
                deepspeed_config={
                    "deepspeed_config_file": str(CONFIG_DIR / DEEPSPEED_CONFIG_NAME),
                    "deepspeed_multinode_launcher": "standard",
                    "zero3_init_flag": True,
                },
            ),
            save_total_limit=6,
            deepspeed=copy.deepcopy(DEEPSPEED_ZERO3_OFFLOAD),
        ),
        Preset(
            name="camel-qlora-1gpu",
            description=(
                "train_camel_qlora.sh: 4-bit NF4 QLoRA on one GPU, r=64, alpha 16, dropout "
                "0.05, max grad norm 0.3, paged AdamW, global batch 16"
            ),
            method="qlora",
            gpus=1,
            hyperparameters={
                **_COMMON,
                "batch_size": 1,
                "gradient_accumulation_steps": 16,
                "learning_rate": 1e-4,
                "warmup_ratio": 0.03,
                "lr_scheduler": "constant",
                "save_steps": 250,
                "eval_steps": 250,
                "gradient_checkpointing": True,
                "lora_r": 64,
                "lora_alpha": 16,
                "lora_dropout": 0.05,
                "max_grad_norm": 0.3,
                "bits": 4,
                "quant_type": "nf4",
                "double_quant": True,
            },
            accelerate=accelerate_config("NO", 1),
            save_total_limit=100,
        ),
    )
}


def apply_preset(body: dict[str, Any]) -> dict[str, Any]:
    """A job body with its ``preset``'s settings filled in; the body's own fields win.

    Raises KeyError naming the known presets when the preset does not exist.
    """
    name = body.get("preset")
    if name is None:
        return body
    if not isinstance(name, str) or name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name]
    hyperparameters = body.get("hyperparameters")
    own = hyperparameters if isinstance(hyperparameters, dict) else {}
    return {
        "method": preset.method,
        "gpus": preset.gpus,
        **body,
        "hyperparameters": {**preset.hyperparameters, **own},
    }
