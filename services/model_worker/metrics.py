"""Prometheus metrics of one worker, and the per-request observer that feeds them and logs.

Each engine has its own registry (no process-global state), exposed at ``GET /metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("services.model_worker.requests")

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)


class WorkerMetrics:
    def __init__(
        self, model: str, queue_length: Callable[[], float], running: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        labels = ["model"]
        self.requests = Counter(
            "camelchat_requests",
            "Generation requests by outcome",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "camelchat_prompt_tokens", "Prompt tokens processed", labels, registry=self.registry
        )
        self.generated_tokens = Counter(
            "camelchat_generated_tokens", "Tokens generated", labels, registry=self.registry
        )
        self.ttft = Histogram(
            "camelchat_time_to_first_token_seconds",
            "Time to first token",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inter_token = Histogram(
            "camelchat_inter_token_latency_seconds",
            "Mean time per output token after the first",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "camelchat_request_duration_seconds",
            "Whole request duration",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        Gauge(
            "camelchat_queue_length",
            "Requests running or waiting",
            labels,
            registry=self.registry,
        ).labels(model).set_function(queue_length)
        Gauge(
            "camelchat_running_batch_size",
            "Sequences decoded together",
            labels,
            registry=self.registry,
        ).labels(model).set_function(running)
        self.model = model

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def rejected(self, outcome: str) -> None:
        self.requests.labels(self.model, outcome).inc()

    async def observe(
        self, chunks: AsyncIterator[dict[str, Any]], request_id: str, protocol: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Pass chunks through; record TTFT, token counts, latency and outcome; log one line."""
        started = time.monotonic()
        first_at: float | None = None
        last: dict[str, Any] | None = None
        outcome = "cancelled"
        try:
            async for chunk in chunks:
                if first_at is None and (chunk.get("text") or chunk.get("token")):
                    first_at = time.monotonic()
                last = chunk
                yield chunk
            outcome = "error" if last is None or last.get("error_code") else "success"
        finally:
            ended = time.monotonic()
            usage = (last or {}).get("usage") or {}
            generated = usage.get("completion_tokens", 0)
            self.requests.labels(self.model, outcome).inc()
            self.prompt_tokens.labels(self.model).inc(usage.get("prompt_tokens", 0))
            self.generated_tokens.labels(self.model).inc(generated)
            self.duration.labels(self.model).observe(ended - started)
            if first_at is not None:
                self.ttft.labels(self.model).observe(first_at - started)
                if generated > 1:
                    self.inter_token.labels(self.model).observe(
                        (ended - first_at) / (generated - 1)
                    )
            log.info(
                "event=request id=%s protocol=%s outcome=%s prompt_tokens=%s "
                "completion_tokens=%s ttft_ms=%s duration_ms=%d finish_reason=%s",
                request_id,
                protocol,
                outcome,
                usage.get("prompt_tokens"),
                generated,
                None if first_at is None else int((first_at - started) * 1000),
                int((ended - started) * 1000),
                (last or {}).get("finish_reason"),
            )
