"""``sdpa_varlen``: packed rows attended sample by sample give what transformers' ``sdpa`` gives
with its block-diagonal packing mask (outputs and gradients), nothing leaks across samples, and
anything with a padding mask or a cache is plain ``sdpa``."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from services.trainer.varlen_attention import register, segment_bounds


def tiny_llama(attention: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in SmolLM2
        max_position_embeddings=128,
        attn_implementation=attention,
        use_cache=False,  # with a cache, transformers does not read packed position_ids
    )
    return LlamaForCausalLM(config).eval()


def packed(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 97, (1, sum(lengths)), generator=generator)
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    return ids, positions


def test_segments_follow_transformers_packing_rule() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [5, 6, 7, 0, 1, 2, 3, 4]])
    assert segment_bounds(positions) == [
        [(0, 3), (3, 5), (5, 6), (6, 8)],
        [(0, 3), (3, 8)],
    ]


def test_packed_row_matches_sdpa_with_its_block_mask() -> None:
    register()
    reference, varlen = tiny_llama("sdpa"), tiny_llama("sdpa_varlen")
    varlen.load_state_dict(reference.state_dict())
    ids, positions = packed([7, 12, 1, 20])
    for model in (reference, varlen):
        model.zero_grad()
        out = model(input_ids=ids, labels=ids, position_ids=positions)
        out.loss.backward()
    ref_out = reference(input_ids=ids, position_ids=positions).logits
    var_out = varlen(input_ids=ids, position_ids=positions).logits
    torch.testing.assert_close(var_out, ref_out, atol=1e-5, rtol=1e-4)
    for (name, a), (_, b) in zip(
        reference.named_parameters(), varlen.named_parameters(), strict=True
    ):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_a_sample_sees_nothing_of_its_neighbours() -> None:
    register()
    model = tiny_llama("sdpa_varlen")
    ids, positions = packed([9, 11])
    alone = model(input_ids=ids[:, 9:], position_ids=positions[:, 9:]).logits
    changed = ids.clone()
    changed[:, :9] = (changed[:, :9] + 1) % 97
    in_row = model(input_ids=changed, position_ids=positions).logits[:, 9:]
    torch.testing.assert_close(in_row, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("with_cache", [False, True])
def test_padding_masks_and_generation_are_plain_sdpa(with_cache: bool) -> None:
    register()
    reference, varlen = tiny_llama("sdpa"), tiny_llama("sdpa_varlen")
    varlen.load_state_dict(reference.state_dict())
    ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    if with_cache:
        a = reference.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
        b = varlen.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
        assert torch.equal(a, b)
    else:
        a = reference(input_ids=ids, attention_mask=mask).logits
        b = varlen(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(b, a)
