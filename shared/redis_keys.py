"""Redis key names, in one place; every key starts with the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = "camelchat:"

    @property
    def workers(self) -> str:
        """Set of registered worker names (their hashes may have expired since)."""
        return f"{self.prefix}workers"

    def worker(self, name: str) -> str:
        """Hash describing one worker; expires when its heartbeats stop."""
        return f"{self.prefix}worker:{name}"

    @property
    def trainers(self) -> str:
        """Set of trainer names that announced their GPUs (their keys may have expired since)."""
        return f"{self.prefix}trainers"

    def trainer(self, name: str) -> str:
        """GPU count one running trainer offers; expires when the trainer stops renewing it."""
        return f"{self.prefix}trainer:{name}"

    @property
    def known_models(self) -> str:
        """Sorted set of model names scored by when they were last served (404 vs 503)."""
        return f"{self.prefix}known_models"

    def record(self, kind: str, record_id: str) -> str:
        """JSON document of one job-like record (dataset, fine-tuning job, merge)."""
        return f"{self.prefix}{kind}:{record_id}"

    def record_index(self, kind: str) -> str:
        """Sorted set of a kind's record ids by creation time."""
        return f"{self.prefix}{kind}s"
