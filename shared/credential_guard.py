"""An ASGI middleware that admits a request only with a credential: a user's key or the worker
token (``Authorization: Bearer <secret>``), except on the paths left open (``/health``).

It runs before any route reads the body, so an unauthenticated caller costs a header check and
nothing more. Each service says how a refusal looks in its own protocol (``refusal``); the answer
is a 401 with ``WWW-Authenticate: Bearer``. With ``Credentials.open`` (no key configured and
ALLOW_UNAUTHENTICATED=true) every request passes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

from shared.auth import Credentials, Role, bearer_token
from shared.constants import ErrorCode

MISSING_CREDENTIAL = (
    "Authorization: this route needs `Authorization: Bearer <key>` with one of "
    "CONTROLLER_API_KEYS or the WORKER_TOKEN"
)
WRONG_CREDENTIAL = "Authorization: the key is not valid here"

# (path, message, error code) -> the JSON body of a 401 in the service's protocol.
Refusal = Callable[[str, str, ErrorCode], dict[str, Any]]


def fastchat_refusal(_path: str, message: str, code: ErrorCode) -> dict[str, Any]:
    """FastChat's error shape, the one every camel-chat service answers with."""
    return {"text": message, "error_code": int(code), "param": "Authorization"}


class CredentialGuard:
    """``app.add_middleware(CredentialGuard, credentials=..., open_paths={"/health"})``."""

    def __init__(
        self,
        app: Any,
        credentials: Credentials,
        open_paths: Collection[str] = ("/health",),
        roles: Collection[Role] = (Role.USER, Role.WORKER),
        refusal: Refusal = fastchat_refusal,
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.open_paths = frozenset(open_paths)
        self.roles = frozenset(roles)
        self.refusal = refusal

    def admits(self, path: str, token: str) -> bool:
        if self.credentials.open or path in self.open_paths:
            return True
        return self.credentials.role(token) in self.roles

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = bearer_token(headers)
        path = scope.get("path", "")
        if self.admits(path, token):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            message, code = (
                (WRONG_CREDENTIAL, ErrorCode.INCORRECT_AUTH_KEY)
                if token
                else (MISSING_CREDENTIAL, ErrorCode.INVALID_AUTH_KEY)
            )
            await self._refuse(send, self.refusal(path, message, code))

    @staticmethod
    async def _refuse(send: Any, body: dict[str, Any]) -> None:
        content = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def no_credentials_error(credentials: Credentials) -> str | None:
    """Why a service must not start with these credentials: none configured and not running
    open on purpose would refuse every caller. None when they are fine."""
    if credentials.open or credentials.api_keys or credentials.worker_token:
        return None
    return (
        "error: no credentials configured: set WORKER_TOKEN and CONTROLLER_API_KEYS (`make up` "
        "writes both into .env), or ALLOW_UNAUTHENTICATED=true to serve every route without a "
        "key on a closed network"
    )
