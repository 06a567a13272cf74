"""Trainer fixtures: a tiny base model whose loss can move in a few steps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file


@pytest.fixture(scope="session")
def learnable_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LLaMA with its output head scaled up 10x.

    A freshly initialised head (std 0.02 on 64 dimensions) keeps every logit near zero, so an
    adapter that only changes hidden states can barely move the loss; a trained model's head has
    a real range. Scaling the head gives the tiny model that range, and LoRA visibly learns.
    """
    folder = tmp_path_factory.mktemp("models") / "tiny-llama-learnable"
    shutil.copytree(tiny_model_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights["lm_head.weight"] = weights["lm_head.weight"] * 10
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder
