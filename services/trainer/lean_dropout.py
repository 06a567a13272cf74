"""LoRA's input dropout without a stored mask: the same dropout, none of its memory.

Why: peft casts each adapted layer's input to the adapter's fp32 before ``lora_dropout``, and
``torch.nn.functional.dropout`` on the CPU keeps its mask for the backward pass as a tensor of
the input's dtype. With LoRA on every linear layer that is seven fp32 copies of a layer's
activations per layer, kept until the backward pass: for SmolLM2 on a 2048-token row, 1.2 GiB of
the 2.9 GiB saved for backward. Here the mask is drawn from a generator seeded by a number taken
from torch's default generator (so ``torch.manual_seed`` still fixes a run), and the backward
pass draws it again from the same seed instead of keeping it; values and gradients are those of
dropout with that mask (tests/trainer/test_lean_dropout.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _keep_mask(shape: torch.Size, device: torch.device, p: float, seed: int) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.rand(shape, device=device, generator=generator) >= p


class _SeededDropout(torch.autograd.Function):
    """``x * keep / (1 - p)``, ``keep`` drawn from ``seed`` in both passes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
        ctx.p, ctx.seed = p, seed
        return x * _keep_mask(x.shape, x.device, p, seed) * (1.0 / (1.0 - p))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        keep = _keep_mask(grad.shape, grad.device, ctx.p, ctx.seed)
        return grad * keep * (1.0 / (1.0 - ctx.p)), None, None


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` whose backward draws its mask again instead of keeping it; the same module
    otherwise (eval mode and ``p == 0`` pass the input through)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        seed = int(torch.randint(0, 2**62, (1,)).item())
        return _SeededDropout.apply(x, self.p, seed)


def lean_lora_dropout(model: nn.Module) -> int:
    """Swap every LoRA layer's ``nn.Dropout`` for ``SeededDropout``; returns how many."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is nn.Dropout:
                dropouts[name] = SeededDropout(dropout.p)
                swapped += 1
    return swapped
