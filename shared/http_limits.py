"""Limits on request bodies for every HTTP service: size, and nesting depth of JSON.

An ASGI middleware, so it applies before any route or framework parses a byte:

- a body larger than the limit is refused with 413 (a ``Content-Length`` over it at once, a
  chunked body as soon as it goes over), without reading the rest into memory;
- a JSON body nested deeper than ``max_depth`` is refused with 400: Python's JSON parser recurses
  per level, and a deep enough document would crash the route with a RecursionError (500).

Paths may get their own size limit for bodies that are streamed (an upload route takes more than a
chat request); a JSON body always has the general limit, since it is held in memory whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import anyio

Scope = dict[str, Any]
Message = dict[str, Any]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 64


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether ``body`` nests arrays/objects deeper than ``max_depth`` (strings are skipped)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # too few openings to nest that deep: no need to walk the bytes
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _error_body(status: int, message: str, code: str) -> bytes:
    kind = "invalid_request_error"
    error = {"message": message, "type": kind, "param": "body", "code": code}
    return json.dumps({"error": error, "detail": message}).encode()


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def has_lone_surrogate(body: bytes) -> bool:
    """Whether the JSON text holds a string with a lone UTF-16 surrogate (``"\\ud800"``).

    JSON allows such escapes, but the text cannot be encoded back (a path, a log line, a
    tokenizer would fail on it). Parsed only when an escape of that range appears at all.
    """
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        document = json.loads(body)
    except ValueError:
        return False  # malformed: the route says so

    def strings(value: Any) -> Any:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    for text in strings(document):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


class BodyLimits:
    """ASGI middleware: ``BodyLimits(app, max_bytes=..., path_limits={"/v1/datasets": ...})``."""

    def __init__(
        self,
        app: Any,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_depth: int = DEFAULT_MAX_JSON_DEPTH,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.path_limits = dict(path_limits or {})

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.path_limits.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        is_json = headers.get("content-type", "").split(";")[0].strip().endswith("json")
        # A path's own limit is for streamed uploads: JSON is held in memory whole, so it always
        # gets the general limit.
        limit = self.max_bytes if is_json else self.limit_for(scope.get("path", ""))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, 413, f"body: larger than {limit} bytes", "body_too_large")
            return
        if is_json:
            await self._json(scope, receive, send, limit)
            return
        await self._streamed(scope, receive, send, limit)

    async def _json(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        """Read the whole (bounded) body, check its depth, then hand it on as one message."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(send, 413, f"body: larger than {limit} bytes", "body_too_large")
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        # A long walk off the event loop: health checks and heartbeats keep answering meanwhile.
        too_deep = (
            await anyio.to_thread.run_sync(json_depth_exceeds, body, self.max_depth)
            if len(body) > 65536
            else json_depth_exceeds(body, self.max_depth)
        )
        if too_deep:
            text = f"body: JSON nested deeper than {self.max_depth} levels"
            await self._refuse(send, 400, text, "body_too_deep")
            return
        if has_lone_surrogate(body):
            text = "body: a string holds a lone UTF-16 surrogate (not valid Unicode text)"
            await self._refuse(send, 400, text, "invalid_unicode")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        """Count the bytes as the app reads them. Past the limit the app sees the client go away
        (``http.disconnect``), whatever it answers is dropped, and the client gets 413."""
        size = 0
        exceeded = refused = False
        text = f"body: larger than {limit} bytes"

        async def counted() -> Message:
            nonlocal size, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused
            if not exceeded:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(send, 413, text, "body_too_large")

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not refused:
            await self._refuse(send, 413, text, "body_too_large")

    async def _refuse(self, send: Any, status: int, message: str, code: str) -> None:
        body = _error_body(status, message, code)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
