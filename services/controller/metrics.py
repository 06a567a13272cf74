"""Prometheus metrics of the controller's OpenAI-compatible API, in a registry of its own.

Enough to watch request rates by status, token throughput, latency, and the calls made to
workers (a warm request should make one); tests also use them to count a client's attempts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# Same buckets as the workers' histograms, so dashboards can compare the two.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "camelchat_openai_requests",
            "OpenAI-API requests by endpoint and HTTP status (499: client went away)",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.worker_calls = Counter(
            "camelchat_openai_worker_calls",
            "HTTP calls made to workers, by path",
            ["path"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "camelchat_openai_prompt_tokens",
            "Prompt tokens processed",
            ["model"],
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "camelchat_openai_completion_tokens",
            "Completion tokens generated",
            ["model"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "camelchat_openai_time_to_first_token_seconds",
            "Time from request to the worker's first snapshot",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "camelchat_openai_request_duration_seconds",
            "Whole request duration",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
