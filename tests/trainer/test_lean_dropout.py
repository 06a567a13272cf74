"""LoRA's dropout without a stored mask: dropout's values and gradients, reproducible by seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from services.trainer.heap import release_free_heap
from services.trainer.lean_dropout import SeededDropout, lean_lora_dropout


def test_values_and_gradients_are_dropouts_with_its_mask() -> None:
    torch.manual_seed(0)
    x = (torch.rand(64, 300) + 0.5).requires_grad_()  # no zeros: a zero output means dropped
    dropout = SeededDropout(0.25).train()
    y = dropout(x)
    keep = y != 0
    assert torch.equal(y, x.detach() * keep * (1 / 0.75))
    assert 0.2 < 1 - keep.float().mean().item() < 0.3
    grad = torch.randn_like(y)
    y.backward(grad)
    assert torch.equal(x.grad, grad * keep * (1 / 0.75))


def test_a_seed_fixes_the_masks_and_each_call_draws_a_new_one() -> None:
    dropout = SeededDropout(0.5).train()
    x = torch.ones(1000)
    torch.manual_seed(7)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(7)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(first, second)


def test_eval_mode_and_zero_rate_pass_through() -> None:
    x = torch.randn(10, requires_grad=True)
    assert SeededDropout(0.3).eval()(x) is x
    assert SeededDropout(0.0).train()(x) is x


def test_lora_layers_get_the_seeded_dropout(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear")
    model = get_peft_model(base, config)
    swapped = lean_lora_dropout(model)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert swapped > 0
    lora = [m for m in dropouts if isinstance(m, SeededDropout)]
    assert len(lora) == swapped and all(m.p == pytest.approx(0.1) for m in lora)
    model.train()
    ids = torch.randint(0, 100, (1, 12))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)


def test_releasing_the_free_heap_is_harmless() -> None:
    assert release_free_heap() in (True, False)
