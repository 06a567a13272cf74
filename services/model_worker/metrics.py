"""Prometheus metrics of one worker, and the per-request observer that feeds them and logs.

Each engine has its own registry (no process-global state), exposed at ``GET /metrics``. Every
series carries the served model's name as its ``model`` label.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("services.model_worker.requests")

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)
_LABELS = ["model"]


@dataclass
class _Timing:
    """When one request started and when its first text (or token) came out."""

    started: float
    first_at: float | None = None


class WorkerMetrics:
    def __init__(
        self, model: str, queue_length: Callable[[], float], running: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        self.model = model
        self.requests = Counter(
            "camelchat_requests",
            "Generation requests by outcome",
            [*_LABELS, "outcome"],
            registry=self.registry,
        )
        self.prompt_tokens = self._counter("camelchat_prompt_tokens", "Prompt tokens processed")
        self.generated_tokens = self._counter("camelchat_generated_tokens", "Tokens generated")
        self.ttft = self._histogram("camelchat_time_to_first_token_seconds", "Time to first token")
        self.inter_token = self._histogram(
            "camelchat_inter_token_latency_seconds", "Mean time per output token after the first"
        )
        self.duration = self._histogram(
            "camelchat_request_duration_seconds", "Whole request duration"
        )
        self._gauge("camelchat_queue_length", "Requests running or waiting", queue_length)
        self._gauge("camelchat_running_batch_size", "Sequences decoded together", running)

    def _counter(self, name: str, documentation: str) -> Any:
        return Counter(name, documentation, _LABELS, registry=self.registry).labels(self.model)

    def _histogram(self, name: str, documentation: str) -> Any:
        return Histogram(
            name, documentation, _LABELS, buckets=_LATENCY_BUCKETS, registry=self.registry
        ).labels(self.model)

    def _gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        Gauge(name, documentation, _LABELS, registry=self.registry).labels(self.model).set_function(
            read
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def rejected(self, outcome: str) -> None:
        self.requests.labels(self.model, outcome).inc()

    async def observe(
        self, chunks: AsyncIterator[dict[str, Any]], request_id: str, protocol: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Pass chunks through; record TTFT, token counts, latency and outcome; log one line."""
        timing = _Timing(time.monotonic())
        last: dict[str, Any] | None = None
        outcome = "cancelled"
        try:
            async for chunk in chunks:
                if timing.first_at is None and (chunk.get("text") or chunk.get("token")):
                    timing.first_at = time.monotonic()
                last = chunk
                yield chunk
            outcome = "error" if last is None or last.get("error_code") else "success"
        finally:
            ended = time.monotonic()
            self._record(outcome, last or {}, timing, ended)
            self._log(request_id, protocol, outcome, last or {}, timing, ended)

    def _record(self, outcome: str, last: dict[str, Any], timing: _Timing, ended: float) -> None:
        usage = last.get("usage") or {}
        generated = usage.get("completion_tokens", 0)
        self.requests.labels(self.model, outcome).inc()
        self.prompt_tokens.inc(usage.get("prompt_tokens", 0))
        self.generated_tokens.inc(generated)
        self.duration.observe(ended - timing.started)
        if timing.first_at is not None:
            self.ttft.observe(timing.first_at - timing.started)
            if generated > 1:
                self.inter_token.observe((ended - timing.first_at) / (generated - 1))

    @staticmethod
    def _log(
        request_id: str,
        protocol: str,
        outcome: str,
        last: dict[str, Any],
        timing: _Timing,
        ended: float,
    ) -> None:
        usage = last.get("usage") or {}
        first_at = timing.first_at
        log.info(
            "event=request id=%s protocol=%s outcome=%s prompt_tokens=%s "
            "completion_tokens=%s ttft_ms=%s duration_ms=%d finish_reason=%s",
            request_id,
            protocol,
            outcome,
            usage.get("prompt_tokens"),
            usage.get("completion_tokens", 0),
            None if first_at is None else int((first_at - timing.started) * 1000),
            int((ended - timing.started) * 1000),
            last.get("finish_reason"),
        )
