"""The causal-LM loss without the whole row's logits in memory.

transformers computes logits for every position of a row (2048 x 49,152 floats for SmolLM2:
400 MB in float32, kept for the backward pass with the log-softmax and its gradient) and then
ignores the positions whose label is -100 (prompts, padding). Here the loss is the same sum over
the trained positions only, in chunks: each chunk's logits are computed, reduced to a loss and
dropped, and recomputed in the backward pass (activation checkpointing), so peak memory holds
one chunk's logits instead of the row's. The value and the gradients equal transformers' own
``ForCausalLMLoss`` (tests/trainer/test_chunked_loss.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
CHUNK_POSITIONS = 512


def causal_lm_parts(model: Any) -> tuple[Any, Any] | None:
    """(decoder, LM head) of a transformers causal LM, or of the one a PEFT model wraps; None
    where the model is not of that shape."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder = getattr(base, "get_decoder", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if get_decoder is None or head is None:
        return None
    decoder = get_decoder()
    return (decoder, head) if decoder is not None else None


def _chunk_loss(head: Any, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def chunked_causal_lm_loss(
    decoder: Any,
    head: Any,
    inputs: dict[str, Any],
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk: int = CHUNK_POSITIONS,
) -> torch.Tensor:
    """transformers' shifted cross-entropy (``sum / num_items_in_batch``, or the mean over
    trained positions when that is None) from ``decoder(**inputs)``'s last hidden state."""
    hidden = decoder(**inputs).last_hidden_state  # [batch, length, hidden]
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    trained = targets != IGNORE_INDEX
    hidden, targets = hidden[trained], targets[trained]  # [positions, hidden], [positions]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.shape[0], chunk):
        part = slice(start, start + chunk)
        total = total + checkpoint(
            _chunk_loss, head, hidden[part], targets[part], use_reentrant=False
        )
    if num_items_in_batch is None:
        return total / max(int(targets.shape[0]), 1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
