"""Packed rows attended per sample: ``sdpa_varlen``, a transformers attention implementation.

With packing, transformers' own ``sdpa`` turns the restarting ``position_ids`` into a
block-diagonal mask over the whole row and SDPA computes every block of it, masked or not: a row
of 2048 tokens holding six samples of ~340 tokens costs the attention of one 2048-token sample,
about six times the work needed. Flash-attention's varlen kernel avoids that on a GPU; on a CPU
(and wherever flash-attn is not installed) this does the same with plain SDPA: the row is cut
where ``position_ids`` stop counting up by one (transformers' own packing rule,
``find_packed_sequence_indices``) and each sample runs causal SDPA on its own, so no token can
see another sample (tests/trainer/test_varlen_attention.py checks outputs and gradients against
``sdpa`` with the block mask).

It only takes over where that reading is certain: a forward without a padding mask whose queries
and keys are the same tokens (training, or a prefill into an empty cache, where positions count
up from 0 and the row is one causal segment); everything else (a padding mask, decoding, a
filled cache) goes to transformers' ``sdpa`` unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "sdpa_varlen"


def segment_bounds(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, (start, end) of each run of positions that count up by one."""
    rows = []
    for row in position_ids.tolist():
        starts = [0] + [i for i in range(1, len(row)) if row[i] != row[i - 1] + 1]
        ends = [*starts[1:], len(row)]
        rows.append(list(zip(starts, ends, strict=True)))
    return rows


def varlen_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Query/key/value ``[batch, heads, length, head_dim]``; output ``[batch, length, heads,
    head_dim]`` as transformers' attention functions return it."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    length = query.shape[2]
    if (
        attention_mask is not None
        or position_ids is None
        or length < 2
        or key.shape[2] != length
        or kwargs.get("output_attentions")
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    position_ids = position_ids.expand(query.shape[0], -1)
    rows = []
    for b, bounds in enumerate(segment_bounds(position_ids)):
        parts = [
            torch.nn.functional.scaled_dot_product_attention(
                query[b : b + 1, :, start:end],
                key[b : b + 1, :, start:end],
                value[b : b + 1, :, start:end],
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
                enable_gqa=groups > 1,
            )
            for start, end in bounds
        ]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    output = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return output.transpose(1, 2).contiguous(), None


def _mask_or_none(**kwargs: Any) -> torch.Tensor | None:
    """No mask where ``varlen_sdpa_forward`` will cut by position (no padding mask, no cache);
    transformers' SDPA mask everywhere else."""
    from transformers.masking_utils import sdpa_mask

    if (
        kwargs.get("attention_mask") is None
        and kwargs["q_length"] == kwargs["kv_length"]
        and not kwargs.get("q_offset")
        and not kwargs.get("kv_offset")
    ):
        return None
    return sdpa_mask(**kwargs)


def register() -> str:
    """Make ``attn_implementation="sdpa_varlen"`` known to transformers; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_sdpa_forward)
    AttentionMaskInterface.register(NAME, _mask_or_none)
    return NAME
