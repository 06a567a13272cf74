"""A stand-in for the controller and its workers that records what clients send: each request's
path and Authorization header. It answers every FastChat route a client of ours calls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

MODEL = "m"
CONV = {"template_name": "t", "system": "", "roles": ["user", "assistant"], "messages": []}


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []
    address: ClassVar[str] = ""

    def _answer(self) -> dict[str, Any]:
        return {
            "/list_models": {"models": [MODEL]},
            "/get_worker_address": {"address": self.address},
            "/worker_get_conv_template": {"conv": CONV},
            "/worker_get_status": {"model_names": [MODEL], "speed": 1, "queue_length": 0},
        }.get(self.path.split("?")[0], {"data": []})

    def do_POST(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/worker_generate_stream":
            body = json.dumps({"text": "Paris", "error_code": 0}).encode() + b"\0"
        else:
            body = json.dumps(self._answer()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def recording_server() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(its URL, the (path, Authorization) of every request so far)."""
    seen: list[tuple[str, str]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _Handler.seen, _Handler.address = seen, url
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield url, seen
    finally:
        server.shutdown()
        server.server_close()
