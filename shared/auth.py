"""Credentials every service checks the same way: users' API keys and the stack's worker token.

A request carries one credential, ``Authorization: Bearer <secret>``. ``Credentials.role`` says
whose it is (a user's key or the worker token) in constant time, so timing reveals nothing; each
service decides which roles a route admits.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.settings import AuthSettings


class Role(StrEnum):
    USER = "user"  # a person or client holding one of CONTROLLER_API_KEYS
    WORKER = "worker"  # the stack's own processes, holding WORKER_TOKEN


def parse_keys(value: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in value.split(",") if key.strip())


def bearer_header(secret: str) -> dict[str, str]:
    """What a client sends with ``secret`` (nothing without one)."""
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; empty when there is none."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _matches(token: str, secrets: tuple[str, ...]) -> bool:
    # Compare against every secret, always, so the time taken says nothing about which matched.
    results = [hmac.compare_digest(token.encode(), secret.encode()) for secret in secrets]
    return any(results)


@dataclass(frozen=True)
class Credentials:
    api_keys: tuple[str, ...]
    worker_token: str
    allow_unauthenticated: bool = False

    @classmethod
    def from_settings(cls, settings: AuthSettings | None = None) -> Credentials:
        settings = settings or AuthSettings()
        return cls(
            parse_keys(settings.controller_api_keys),
            settings.worker_token,
            settings.allow_unauthenticated,
        )

    @property
    def open(self) -> bool:
        """No key configured and running open was asked for: every route admits everyone."""
        return self.allow_unauthenticated and not self.api_keys

    def role(self, token: str) -> Role | None:
        """Whose credential ``token`` is; None when it is nobody's."""
        if not token:
            return None
        is_user = _matches(token, self.api_keys)
        is_worker = bool(self.worker_token) and _matches(token, (self.worker_token,))
        if is_worker:
            return Role.WORKER
        return Role.USER if is_user else None
