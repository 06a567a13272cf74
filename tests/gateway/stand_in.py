"""A stand-in upstream for the gateway's tests: a stream that waits for its reader, a request
that hangs until released, a websocket-style upgrade that echoes bytes, and 404 elsewhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The longest a handler waits for the test before giving up (only bounds a failing test).
GIVE_UP_SECONDS = 60.0


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        # Set by the test once it read the first event through the gateway.
        self.first_event_seen = threading.Event()
        # Whether the stream gave up waiting: the first event never reached the reader.
        self.gave_up = False
        self.release_hung = threading.Event()
        self.hanging = threading.Semaphore(0)
        self.last_headers: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.last_headers = dict(self.headers.items())
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._echo_upgrade()
        elif self.path.endswith("/stream"):
            self._stream()
        elif self.path.endswith("/hang"):
            self.server.hanging.release()
            self.server.release_hung.wait(GIVE_UP_SECONDS)
            self._answer(200, b"released")
        elif self.path == "/":
            self._answer(200, b"stand-in web UI")
        else:
            self._answer(404, f"stand-in: no {self.path}".encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        """One event, then the rest only once the reader has seen it (or after giving up)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"data: first\n\n")
        self.wfile.flush()
        self.server.gave_up = not self.server.first_event_seen.wait(GIVE_UP_SECONDS)
        self.wfile.write(b"data: second\n\ndata: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _echo_upgrade(self) -> None:
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        while chunk := self.rfile.read1(4096):
            self.wfile.write(chunk.upper())
            self.wfile.flush()
        self.close_connection = True


@contextmanager
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release_hung.set()
        server.first_event_seen.set()
        server.shutdown()
        server.server_close()
