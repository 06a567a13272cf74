"""A small HTTP server on 127.0.0.1 for URL-source tests: it counts the paths it is asked for.

``/to?url=X`` redirects to X; ``/loop`` redirects to itself; ``/big`` declares a huge
Content-Length; ``/endless`` streams 64 KiB without one; any other path answers ``body``.
"""

from __future__ import annotations

import http.server
import threading


class UrlServer:
    def __init__(self, body: bytes) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hits.append(self.path)
                if self.path.startswith("/to?url="):
                    self._redirect(self.path.split("=", 1)[1])
                elif self.path == "/loop":
                    self._redirect("/loop")
                elif self.path == "/endless":
                    self.send_response(200)
                    self.end_headers()
                    for _ in range(64):
                        self.wfile.write(b"x" * 1024)
                else:
                    self.send_response(200)
                    size = 10**12 if self.path == "/big" else len(body)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    if self.path != "/big":
                        self.wfile.write(body)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
