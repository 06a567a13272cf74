"""Per-request choice of the next token: logits processors, greedy or seeded sampling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from shared.schemas import GenerateParams

GREEDY_TEMPERATURE = 1e-5


def build_logits_processor(params: GenerateParams, greedy: bool = False) -> LogitsProcessorList:
    """The request's logits processors. For a greedy request only those that can change the
    argmax (repetition penalty): temperature, top-p and top-k never do, and cost a sort of the
    vocabulary per token."""
    processors = LogitsProcessorList()
    if not greedy and params.temperature >= GREEDY_TEMPERATURE and params.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(params.temperature))
    if params.repetition_penalty > 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if not greedy and 1e-8 <= params.top_p < 1.0:
        processors.append(TopPLogitsWarper(params.top_p))
    if not greedy and params.top_k > 0:
        processors.append(TopKLogitsWarper(params.top_k))
    return processors


def is_greedy(params: GenerateParams) -> bool:
    return params.temperature < GREEDY_TEMPERATURE or params.top_p < 1e-8


class Sampler:
    """Chooses tokens for one request, with its own parameters and random generator."""

    def __init__(self, params: GenerateParams, device: Any) -> None:
        self.greedy = is_greedy(params)
        self.processors = build_logits_processor(params, self.greedy)
        self.generator: torch.Generator | None = None
        if params.seed is not None and not self.greedy:
            self.generator = torch.Generator(device=device).manual_seed(params.seed)
        # Requests with equal keys can be processed and sampled as one batch: unseeded, and
        # without a repetition penalty (which needs each row's own history).
        self.batch_key: tuple[float, float, int] | None = None
        if not self.greedy and self.generator is None and params.repetition_penalty <= 1.0:
            self.batch_key = (params.temperature, params.top_p, params.top_k)

    @property
    def plain_greedy(self) -> bool:
        """Argmax of the raw logits: can be computed for many requests at once."""
        return self.greedy and not self.processors

    def choose(
        self, logits: torch.Tensor, token_ids: torch.Tensor, with_logprob: bool = False
    ) -> tuple[int, float | None]:
        """``logits``: [1, vocab] float; ``token_ids``: [1, length] prompt + generated so far.

        Returns the token and, if asked, its log-probability under the processed distribution.
        """
        if self.processors:
            logits = self.processors(token_ids, logits)
        if self.greedy:
            token = int(torch.argmax(logits, dim=-1))
        else:
            probs = torch.softmax(logits, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        if not with_logprob:
            return token, None
        return token, float(torch.log_softmax(logits, dim=-1)[0, token])


Choice = tuple[int, float | None]


def choose_many(
    samplers: list[Sampler],
    logits: torch.Tensor,
    token_ids: Callable[[int], torch.Tensor],
    with_logprob: list[bool],
) -> list[Choice]:
    """Each row's next token, as ``Sampler.choose`` would pick it, with the per-row work batched:
    one argmax for plain greedy rows, and one processing and one draw for each group of
    unseeded rows sampling with the same parameters. ``token_ids(i)`` is row i's history."""
    choices: list[Choice | None] = [None] * len(samplers)
    greedy = torch.argmax(logits, dim=-1).tolist()
    groups: dict[tuple[float, float, int], list[int]] = {}
    for i, sampler in enumerate(samplers):
        if sampler.plain_greedy and not with_logprob[i]:
            choices[i] = (greedy[i], None)
        elif sampler.batch_key is not None:
            groups.setdefault(sampler.batch_key, []).append(i)
        else:
            choices[i] = sampler.choose(logits[i : i + 1], token_ids(i), with_logprob[i])
    for rows in groups.values():
        index = torch.tensor(rows, device=logits.device)
        processed = samplers[rows[0]].processors(None, logits.index_select(0, index))
        tokens = torch.multinomial(torch.softmax(processed, dim=-1), 1)
        logprobs = None
        if any(with_logprob[i] for i in rows):
            logprobs = torch.log_softmax(processed, dim=-1).gather(1, tokens)[:, 0].tolist()
        for j, (i, token) in enumerate(zip(rows, tokens[:, 0].tolist(), strict=True)):
            choices[i] = (token, logprobs[j] if logprobs and with_logprob[i] else None)
    return [c for c in choices if c is not None]
