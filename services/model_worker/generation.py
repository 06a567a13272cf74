"""One request at a time, token by token with a KV cache: prefill the (left-truncated) prompt,
then sample one token per step until a stop token, a stop string or ``max_new_tokens``.

This is how the original worker decodes; it stays as the ``sequential`` engine (and the
benchmark's baseline). The batching engine shares the prompt, sampling and decoding rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from services.model_worker.decoding import SequenceDecoder
from services.model_worker.sampling import Sampler
from shared.schemas import GenerateParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedPrompt:
    """Prompt token ids after left truncation, and how many were cut."""

    input_ids: list[int]
    truncated: int


def prepare_prompt(
    tokenizer: Any,
    prompt: str,
    context_len: int,
    max_new_tokens: int,
    truncate: int | None = None,
) -> PreparedPrompt:
    """Tokenize and keep the most recent tokens that leave room for ``max_new_tokens``
    (and at most ``truncate`` of them when given)."""
    ids = tokenizer(prompt).input_ids
    budget = context_len - max_new_tokens
    if truncate is not None:
        budget = min(budget, truncate)
    if len(ids) > budget:
        return PreparedPrompt(ids[len(ids) - budget :], len(ids) - budget)
    return PreparedPrompt(ids, 0)


def generate_stream(
    model: Any,
    tokenizer: Any,
    params: GenerateParams,
    *,
    context_len: int,
    stream_interval: int = 2,
    extra_stop_token_ids: list[int] | None = None,
    cancel: threading.Event | None = None,
    token_events: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield ``{"text", "error_code", "usage", "finish_reason"}`` snapshots; the last one has
    ``finish_reason`` set ("stop" or "length")."""
    device = model.device
    prepared = prepare_prompt(
        tokenizer, params.prompt, context_len, params.max_new_tokens, params.truncate
    )
    sampler = Sampler(params, device)
    decoder = SequenceDecoder(
        tokenizer,
        params,
        len(prepared.input_ids),
        extra_stop_token_ids,
        stream_interval,
        token_events,
    )
    all_ids = torch.tensor([prepared.input_ids], device=device)
    next_input = all_ids
    cache = None
    try:
        with torch.inference_mode():
            while not decoder.finished:
                if cancel is not None and cancel.is_set():
                    log.info("event=generation_cancelled step=%d", len(decoder.generated))
                    return
                out = model(input_ids=next_input, cache=cache, use_cache=True, logits_to_keep=1)
                cache = out.cache
                token, logprob = sampler.choose(
                    out.logits[:, -1, :].float(), all_ids, with_logprob=token_events
                )
                next_input = torch.tensor([[token]], device=device)
                all_ids = torch.cat([all_ids, next_input], dim=1)
                if (chunk := decoder.add(token, logprob)) is not None:
                    yield chunk
    finally:
        # No gc.collect() here (FastChat does one per request): a full collection holds the GIL
        # for ~0.2 s and stalls every other request and the event loop.
        del cache
        if device.type == "cuda":
            torch.cuda.empty_cache()
