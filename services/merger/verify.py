"""Check a merged model against base + adapter on a fixed probe batch before it is published.

Both sides run at the merge dtype, so the figure measures what merging changed: rounding the
LoRA delta into the base weights (tiny in fp32, around 1e-2 in 16-bit) or a wrong merge (of the
order of the adapter's whole effect).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# max|merged - reference| / max|reference| over the probe logits, per merge dtype.
DEFAULT_TOLERANCES = {"fp32": 1e-3, "fp16": 3e-2, "bf16": 1e-1}
PROBE_SEQUENCES = 3
PROBE_LENGTH = 16
PROBE_SEED = 1234


def probe_batch(vocab_size: int) -> torch.Tensor:
    """The same token ids every time: a few short sequences spread over the vocabulary."""
    import torch

    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randint(0, vocab_size, (PROBE_SEQUENCES, PROBE_LENGTH), generator=generator)


def probe_logits(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(input_ids=input_ids.to(device)).logits.float().cpu()


def relative_error(merged: torch.Tensor, reference: torch.Tensor) -> float:
    scale = reference.abs().max().item()
    difference = (merged - reference).abs().max().item()
    return difference / scale if scale > 0 else difference
