"""The chunked loss equals transformers' own causal-LM loss, in value and in gradients, for plain
and LoRA models, with and without ``num_items_in_batch``, chunks smaller than a row included."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from services.trainer.chunked_loss import causal_lm_parts, chunked_causal_lm_loss
from tests.trainer.test_varlen_attention import tiny_llama


def batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (2, 40), generator=generator)
    labels = ids.clone()
    labels[:, :9] = -100  # a prompt
    labels[1, 30:] = -100  # padding
    labels[0, 20:24] = -100  # a second sample's prompt in a packed row
    positions = torch.arange(40).repeat(2, 1)
    return {"input_ids": ids, "position_ids": positions}, labels


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("num_items", [None, 50])
@pytest.mark.parametrize("chunk", [7, 512])
def test_value_and_gradients_equal_transformers_loss(
    lora: bool, num_items: int | None, chunk: int
) -> None:
    reference, chunked = tiny_llama("sdpa"), tiny_llama("sdpa")
    if lora:
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "gate_proj"])
        reference, chunked = get_peft_model(reference, config), get_peft_model(chunked, config)
        chunked.load_state_dict(reference.state_dict())
    inputs, labels = batch()
    extra = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    expected = reference(**inputs, labels=labels, **extra).loss
    expected.backward()
    parts = causal_lm_parts(chunked)
    assert parts is not None
    loss = chunked_causal_lm_loss(*parts, inputs, labels, extra.get("num_items_in_batch"), chunk)
    loss.backward()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    trained = [(n, p) for n, p in reference.named_parameters() if p.requires_grad]
    mine = dict(chunked.named_parameters())
    for name, parameter in trained:
        torch.testing.assert_close(mine[name].grad, parameter.grad, atol=1e-5, rtol=1e-4)
