"""Bearer API keys for the /v1 routes (the worker-protocol routes stay open to workers)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request

from services.controller.openai_errors import OpenAIError


def parse_api_keys(value: str) -> list[str]:
    return [key.strip() for key in value.split(",") if key.strip()]


def bearer_header(api_key: str) -> dict[str, str]:
    """What a client sends with ``api_key`` (nothing without one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _unauthorized(message: str) -> OpenAIError:
    return OpenAIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def api_key_guard(keys: list[str]) -> Callable[[Request], Awaitable[None]]:
    """A dependency that checks ``Authorization: Bearer <key>``; no keys configured: open."""
    encoded = [key.encode() for key in keys]

    async def check(request: Request) -> None:
        if not encoded:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        # Compare against every key in constant time, so timing reveals nothing.
        matches = [hmac.compare_digest(token.encode(), key) for key in encoded]
        if not any(matches):
            raise _unauthorized("Incorrect API key provided.")

    return check
