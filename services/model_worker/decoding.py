"""From sampled tokens to worker-protocol snapshots: stop rules, usage, partial UTF-8.

Shared by every engine so that a request's output does not depend on how it was scheduled.
"""

from __future__ import annotations

from typing import Any

from services.model_worker.stopping import find_stop, visible_text
from shared.schemas import GenerateParams


def stop_token_ids(params: GenerateParams, tokenizer: Any, extra: list[int]) -> set[int]:
    ids = set(params.stop_token_ids or []) | set(extra)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def usage_of(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The ``usage`` of a snapshot: exact counts of prompt and generated tokens."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class SequenceDecoder:
    """Follows one generation token by token and says what to send and when to stop.

    Usage counts are exact: the prompt tokens the model saw and every generated token. A stop on
    the last allowed step reports "stop" (the original reported "length").
    """

    def __init__(
        self,
        tokenizer: Any,
        params: GenerateParams,
        prompt_tokens: int,
        extra_stop_token_ids: list[int] | None = None,
        stream_interval: int = 2,
        token_events: bool = False,
    ) -> None:
        self._tokenizer = tokenizer
        self._params = params
        self._stops = params.stop_strings()
        self._stop_ids = stop_token_ids(params, tokenizer, extra_stop_token_ids or [])
        self._interval = max(1, stream_interval)
        self._prefix = params.prompt if params.echo else ""
        self._shown = ""
        self.prompt_tokens = prompt_tokens
        self.generated: list[int] = []
        self.finished = False
        # Per-token events (id, text, logprob, special) for protocols that stream tokens (TGI).
        self.token_events = token_events
        self._special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])

    def add(self, token: int, logprob: float | None = None) -> dict[str, Any] | None:
        """Record a sampled token; return a snapshot to send, if one is due."""
        step = len(self.generated)
        self.generated.append(token)
        stopped_by_token = token in self._stop_ids
        stopped = stopped_by_token
        last = stopped or step == self._params.max_new_tokens - 1
        if not (self._stops or last or self.token_events or step % self._interval == 0):
            return None
        text = self._tokenizer.decode(
            self.generated, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        if self._stops:
            match = find_stop(text, self._stops)
            if match.stopped or not last:
                text = text[: match.end]
            stopped = stopped or match.stopped
            last = last or stopped
        text = visible_text(text, final=last)
        chunk: dict[str, Any] = {
            "text": self._prefix + text,
            "error_code": 0,
            "usage": usage_of(self.prompt_tokens, len(self.generated)),
            "finish_reason": None,
        }
        if self.token_events:
            chunk["token"] = {
                "id": token,
                "text": self._tokenizer.decode([token], clean_up_tokenization_spaces=False),
                "logprob": logprob,
                "special": token in self._special_ids,
            }
        if last:
            self.finished = True
            chunk["finish_reason"] = "stop" if stopped else "length"
            if self.token_events:
                chunk["stop_kind"] = (
                    "eos_token" if stopped_by_token else "stop_sequence" if stopped else "length"
                )
            return chunk
        if self.token_events:
            return chunk
        if text != self._shown and step % self._interval == 0:
            self._shown = text
            return chunk
        return None
