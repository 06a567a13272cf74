"""A pass-through HTTP proxy in front of one worker that records the bodies it forwards.

Workers register under the proxy's address, so every call a controller or a FastChat server
makes to the worker goes through it; the test then reads the exact prompts each client built.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support import free_port


class RecordingProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def prompts(self, path: str = "") -> list[str]:
        """The prompts sent to generation routes (``path``: one route only), in order."""
        return [
            body["prompt"]
            for called, body in self.calls
            if called.startswith("/worker_generate") and (not path or called == path)
        ]

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    proxy.calls.append((self.path, json.loads(body or b"{}")))
                except ValueError:
                    proxy.calls.append((self.path, {}))
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("content-type", "authorization")
                }
                url = proxy.target + self.path
                with httpx.stream(
                    self.command, url, content=body, headers=headers, timeout=120
                ) as answer:
                    self.send_response(answer.status_code)
                    kind = answer.headers.get("content-type", "application/json")
                    self.send_header("Content-Type", kind)
                    self.end_headers()
                    for chunk in answer.iter_raw():
                        self.wfile.write(chunk)
                        self.wfile.flush()

        return Handler
