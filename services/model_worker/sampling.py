"""Per-request choice of the next token: logits processors, greedy or seeded sampling."""

from __future__ import annotations

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


class Sampler:
    """Chooses tokens for one request, with its own parameters and random generator."""

    def __init__(self, params: GenerateParams, device: Any) -> None:
        self.greedy = is_greedy(params)
        # Greedy decoding only needs processors that change the argmax (repetition penalty).
        self.processors = build_logits_processor(params)
        self.generator: torch.Generator | None = None
        if params.seed is not None and not self.greedy:
            self.generator = torch.Generator(device=device).manual_seed(params.seed)

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
