"""Adapters and odd bases for the merger tests, built on the fly from the tiny LLaMA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

TEMPLATE = "vicuna_v1.1"


def make_adapter(
    base: Path,
    folder: Path,
    *,
    std: float = 0.1,
    seed: int = 1,
    quantized: bool = False,
    tokenizer: bool = True,
    summary: bool = True,
) -> Path:
    """A LoRA adapter on every linear layer, with random (non-zero) B matrices so that merging
    visibly changes the logits; saved the way the trainer saves ``final/``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if quantized:  # QLoRA: trained against the NF4 base
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
        kwargs["device_map"] = "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    peft_model.save_pretrained(str(folder))
    if tokenizer:
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(folder))
    if summary:
        record = {
            "base_model": str(base),
            "method": "qlora" if quantized else "lora",
            "template": TEMPLATE,
            "adapter": True,
        }
        (folder / "camel_training.json").write_text(json.dumps(record))
    return folder


def make_base(tiny: Path, folder: Path, **config: Any) -> Path:
    """A LLaMA like the tiny one with some config fields changed (and its tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    shutil.copytree(tiny, folder, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    settings = json.loads((tiny / "config.json").read_text())
    settings.update(config)
    LlamaForCausalLM(LlamaConfig(**settings)).save_pretrained(str(folder))
    return folder


def edit_json(path: Path, **fields: Any) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def copy_folder(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    return folder
