"""Who may call which controller route: ``shared/auth.py``'s credentials applied to its paths.

- open to anyone: ``/health`` and ``/test_connection`` (and ``/metrics`` with PUBLIC_METRICS);
- the worker protocol's membership routes (``/register_worker``, ``/receive_heart_beat``,
  ``/unregister_worker``): the worker token, or any caller whose address is in
  TRUSTED_WORKER_NETWORKS (FastChat's own workers send no token). A user's key is not enough, and
  loopback is not trusted unless listed. The address is the TCP peer's, never a forwarded header;
- every other route (the ``/v1`` API, the management APIs, the rest of the worker protocol, the
  OpenAPI document): a user's key or the worker token.

When no key is configured and ALLOW_UNAUTHENTICATED is set, every route is open. The check is an
ASGI middleware, so no route (nor a 404) answers before it, and no body is read for a refusal.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from enum import Enum
from typing import Any

from shared.auth import Credentials, Role, bearer_token, parse_keys
from shared.constants import ErrorCode
from shared.settings import AuthSettings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

OPEN_PATHS = frozenset({"/health", "/test_connection"})
MEMBERSHIP_PATHS = frozenset({"/register_worker", "/receive_heart_beat", "/unregister_worker"})
METRICS_PATH = "/metrics"

NO_KEY = "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
WRONG_KEY = "Incorrect API key provided."
WORKERS_ONLY = (
    "Workers register, heartbeat and unregister with the worker token (WORKER_TOKEN, sent as "
    "'Authorization: Bearer <token>') or from a network in TRUSTED_WORKER_NETWORKS; a user's "
    "API key is not enough."
)


class Access(Enum):
    OPEN = "open"
    CALLER = "a user's key or the worker token"
    MEMBERSHIP = "the worker token or a trusted network"


class TrustedNetworks:
    """Networks whose peers may join as workers without the token (TRUSTED_WORKER_NETWORKS)."""

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, value: str) -> TrustedNetworks:
        """``"10.0.0.0/8, fd00::/8"``; a bad entry raises ValueError naming it."""
        networks = []
        for entry in parse_keys(value):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not a network (CIDR, e.g. 10.0.0.0/8)") from None
        return cls(networks)

    def admits(self, host: str | None) -> bool:
        if not host or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = [address] if mapped is None else [address, mapped]
        return any(a in n for a in candidates for n in self.networks if a.version == n.version)


def startup_problem(settings: AuthSettings) -> str | None:
    """Why a controller with these settings must not start; None when it may."""
    if not parse_keys(settings.controller_api_keys) and not settings.allow_unauthenticated:
        return (
            "refusing to start without CONTROLLER_API_KEYS: set them (make up writes a key into "
            ".env), or set ALLOW_UNAUTHENTICATED=true to run every route open on a closed network"
        )
    try:
        TrustedNetworks.parse(settings.trusted_worker_networks)
    except ValueError as exc:
        return f"TRUSTED_WORKER_NETWORKS: {exc}"
    return None


def access_of(path: str, public_metrics: bool) -> Access:
    if path in OPEN_PATHS or (path == METRICS_PATH and public_metrics):
        return Access.OPEN
    if path in MEMBERSHIP_PATHS:
        return Access.MEMBERSHIP
    return Access.CALLER


def refusal(path: str, status: int, message: str, error_code: ErrorCode) -> bytes:
    """The body of a refusal in the shape of the route's API: OpenAI's under /v1, FastChat's
    (``text``, ``error_code``) elsewhere."""
    if path.startswith("/v1/") or path == "/v1":
        code = "invalid_api_key" if status == 401 else "permission_denied"
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        return json.dumps({"error": error}).encode()
    return json.dumps({"text": message, "error_code": int(error_code), "param": None}).encode()


class ControllerAuth:
    """ASGI middleware: admit a request by its path's ``Access``, or refuse it (401/403)."""

    def __init__(
        self,
        app: Any,
        credentials: Credentials,
        trusted: TrustedNetworks,
        public_metrics: bool = False,
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.trusted = trusted
        self.public_metrics = public_metrics

    def decide(self, path: str, token: str, peer: str | None) -> tuple[int, str, ErrorCode] | None:
        """None: admitted; else (status, message, FastChat error code) of the refusal."""
        access = access_of(path, self.public_metrics)
        if self.credentials.open or access is Access.OPEN:
            return None
        role = self.credentials.role(token)
        if access is Access.MEMBERSHIP:
            if role is Role.WORKER or self.trusted.admits(peer):
                return None
            if role is Role.USER:
                return 403, WORKERS_ONLY, ErrorCode.NO_PERMISSION
            return 401, f"{WRONG_KEY if token else NO_KEY} {WORKERS_ONLY}", _auth_code(token)
        if role is not None:
            return None
        return 401, WRONG_KEY if token else NO_KEY, _auth_code(token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        peer = (scope.get("client") or (None,))[0]
        path = scope.get("path", "")
        refused = self.decide(path, bearer_token(headers), peer)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message, error_code = refused
        body = refusal(path, status, message, error_code)
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 401:
            response_headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


def _auth_code(token: str) -> ErrorCode:
    return ErrorCode.INCORRECT_AUTH_KEY if token else ErrorCode.INVALID_AUTH_KEY
