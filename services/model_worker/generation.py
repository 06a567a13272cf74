"""Token-by-token generation with a KV cache, sampling controls and stop rules (spec §4.5).

Runs synchronously (call it from a thread); yields cumulative snapshots in the worker-protocol
shape. Differences from the original, on purpose: usage counts are exact (prompt tokens actually
fed to the model, every generated token), a stop on the last step reports "stop", stop strings cut
at their earliest occurrence, and a partial stop only holds back its own characters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from services.model_worker.stopping import find_stop, visible_text
from shared.schemas import GenerateParams

log = logging.getLogger(__name__)

GREEDY_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class PreparedPrompt:
    """Prompt token ids after left truncation, and how many were cut."""

    input_ids: list[int]
    truncated: int


def prompt_budget(context_len: int, max_new_tokens: int) -> int:
    return context_len - max_new_tokens


def prepare_prompt(
    tokenizer: Any, prompt: str, context_len: int, max_new_tokens: int
) -> PreparedPrompt:
    """Tokenize and keep the most recent tokens that leave room for ``max_new_tokens``."""
    ids = tokenizer(prompt).input_ids
    budget = prompt_budget(context_len, max_new_tokens)
    if len(ids) > budget:
        return PreparedPrompt(ids[len(ids) - budget :], len(ids) - budget)
    return PreparedPrompt(ids, 0)


def build_logits_processor(params: GenerateParams) -> LogitsProcessorList:
    processors = LogitsProcessorList()
    if params.temperature >= GREEDY_TEMPERATURE and params.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(params.temperature))
    if params.repetition_penalty > 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if 1e-8 <= params.top_p < 1.0:
        processors.append(TopPLogitsWarper(params.top_p))
    if params.top_k > 0:
        processors.append(TopKLogitsWarper(params.top_k))
    return processors


def is_greedy(params: GenerateParams) -> bool:
    return params.temperature < GREEDY_TEMPERATURE or params.top_p < 1e-8


def stop_token_ids(params: GenerateParams, tokenizer: Any, extra: list[int]) -> set[int]:
    ids = set(params.stop_token_ids or []) | set(extra)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def generate_stream(
    model: Any,
    tokenizer: Any,
    params: GenerateParams,
    *,
    context_len: int,
    stream_interval: int = 2,
    extra_stop_token_ids: list[int] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``{"text", "error_code", "usage", "finish_reason"}`` snapshots; the last one has
    ``finish_reason`` set ("stop" or "length")."""
    device = model.device
    prepared = prepare_prompt(tokenizer, params.prompt, context_len, params.max_new_tokens)
    prompt_tokens = len(prepared.input_ids)
    processors = build_logits_processor(params)
    greedy = is_greedy(params)
    stops = params.stop_strings()
    stop_ids = stop_token_ids(params, tokenizer, extra_stop_token_ids or [])
    generator = None
    if params.seed is not None and not greedy:
        generator = torch.Generator(device=device).manual_seed(params.seed)

    all_ids = torch.tensor([prepared.input_ids], device=device)
    generated: list[int] = []
    prefix = params.prompt if params.echo else ""
    shown = ""
    finish_reason = "length"
    cache = None
    next_input = all_ids
    try:
        with torch.inference_mode():
            for step in range(params.max_new_tokens):
                if cancel is not None and cancel.is_set():
                    log.info("event=generation_cancelled step=%d", step)
                    return
                out = model(input_ids=next_input, cache=cache, use_cache=True, logits_to_keep=1)
                cache = out.cache
                logits = out.logits[:, -1, :].float()
                if processors:
                    logits = processors(all_ids, logits)
                if greedy:
                    token = int(torch.argmax(logits, dim=-1))
                else:
                    probs = torch.softmax(logits, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                generated.append(token)
                next_input = torch.tensor([[token]], device=device)
                all_ids = torch.cat([all_ids, next_input], dim=1)

                stopped = token in stop_ids
                last = stopped or step == params.max_new_tokens - 1
                if not (stops or last or step % stream_interval == 0):
                    continue
                text = tokenizer.decode(
                    generated, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
                if stops:
                    match = find_stop(text, stops)
                    stopped = stopped or match.stopped
                    text = text[: match.end] if (match.stopped or not last) else text
                    last = last or stopped
                text = visible_text(text, final=last)
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(generated),
                    "total_tokens": prompt_tokens + len(generated),
                }
                if stopped:
                    finish_reason = "stop"
                if last:
                    yield {
                        "text": prefix + text,
                        "error_code": 0,
                        "usage": usage,
                        "finish_reason": finish_reason,
                    }
                    return
                if text != shown and (step % stream_interval == 0):
                    shown = text
                    yield {
                        "text": prefix + text,
                        "error_code": 0,
                        "usage": usage,
                        "finish_reason": None,
                    }
    finally:
        # No gc.collect() here (FastChat does one per request): a full collection holds the GIL
        # for ~0.2 s and stalls every other request and the event loop.
        del cache
        if device.type == "cuda":
            torch.cuda.empty_cache()
