"""A small OpenAI-compatible moderation endpoint for the tests: ``POST /v1/moderations`` flags
any input containing ``forbidden``, and records what it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FLAG_WORD = "forbidden"


class ModerationServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        # Set: answer 500 instead of a verdict.
        self.broken = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def inputs(self) -> list[str]:
        return [r["body"]["input"] for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: ModerationServer

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw)
        auth = self.headers.get("Authorization", "")
        self.server.requests.append({"path": self.path, "body": body, "authorization": auth})
        if self.path != "/v1/moderations" or self.server.broken:
            self._send(404 if self.server.broken is False else 500, {"error": "no"})
            return
        flagged = FLAG_WORD in body["input"]
        verdict = {"flagged": flagged, "categories": {"harassment": flagged}}
        self._send(200, {"id": "modr-test", "model": "stand-in", "results": [verdict]})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def moderation_server() -> Iterator[ModerationServer]:
    server = ModerationServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
