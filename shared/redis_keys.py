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
