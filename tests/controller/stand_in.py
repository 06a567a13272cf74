"""A model-worker double: FastAPI + uvicorn in a thread, answering the worker protocol from a
script, for what a real worker cannot be made to do on demand (overload, fail before its first
chunk, die right after serving, lie about itself) and to see which prompts reach it.

It joins a controller as a real worker does: it registers (the controller then reads its status
from ``/worker_get_status``) and heartbeats every 0.5 s, sending ``token`` when given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from shared.auth import bearer_header
from shared.conversation import get_conv_template
from shared.worker_protocol import encode_chunk
from tests.support import free_port, wait_until

Generate = Callable[[], Response]


def one_snapshot(text: str = "ok") -> Response:
    chunk = {
        "text": text,
        "error_code": 0,
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        "finish_reason": "stop",
    }
    return Response(encode_chunk(chunk), media_type="application/octet-stream")


class StandInWorker:
    def __init__(
        self, models: list[str], generate: Generate = one_snapshot, speed: float = 1.0
    ) -> None:
        self.models = models
        self.speed = speed
        self.generate = generate
        self.calls = 0
        self.prompts: list[str] = []
        self.authorizations: list[str] = []
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self._quiet = threading.Event()  # set: no more heartbeats
        self._heart: threading.Thread | None = None
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def note_credentials(request: Request, call_next: Callable) -> Response:
            self.authorizations.append(request.headers.get("authorization", ""))
            return await call_next(request)

        @app.post("/worker_get_status")
        async def status() -> dict:
            return {"model_names": self.models, "speed": self.speed, "queue_length": 0}

        @app.post("/worker_get_conv_template")
        async def conv_template() -> dict:
            return {"conv": get_conv_template("vicuna_v1.1").dict()}

        @app.post("/model_details")
        async def model_details() -> dict:
            return {"context_length": 2048}

        @app.post("/count_token")
        async def count_token() -> dict:
            return {"count": 3, "error_code": 0}

        @app.post("/worker_generate_stream")
        async def generate_stream(request: Request) -> Response:
            self.calls += 1
            self.prompts.append((await request.json()).get("prompt", ""))
            return self.generate()

        @app.post("/worker_generate")
        @app.post("/worker_generate_completion")
        @app.post("/worker_get_embeddings")
        async def generate(request: Request) -> Response:
            """The last chunk of the script, as JSON."""
            self.calls += 1
            self.prompts.append((await request.json()).get("prompt", ""))
            answer = self.generate()
            last = bytes(answer.body).rstrip(b"\0").rsplit(b"\0", 1)[-1]
            return Response(last, status_code=answer.status_code, media_type="application/json")

        return app

    def start(self) -> StandInWorker:
        self.thread.start()
        assert wait_until(lambda: self.server.started, 10)
        return self

    def join(self, controller: str, token: str = "") -> StandInWorker:
        """Register with ``controller`` and heartbeat until ``stop``."""
        headers = bearer_header(token)
        self.register(controller, headers).raise_for_status()
        self._heart = threading.Thread(
            target=self._heartbeats, args=(controller, headers), daemon=True
        )
        self._heart.start()
        return self

    def register(self, controller: str, headers: dict[str, str]) -> httpx.Response:
        body = {"worker_name": self.address, "check_heart_beat": True}
        return httpx.post(f"{controller}/register_worker", json=body, headers=headers, timeout=10)

    def _heartbeats(self, controller: str, headers: dict[str, str]) -> None:
        body = {"worker_name": self.address, "queue_length": 0}
        while not self._quiet.wait(0.5):
            try:
                answer = httpx.post(
                    f"{controller}/receive_heart_beat", json=body, headers=headers, timeout=5
                )
                if answer.status_code == 200 and not answer.json()["exist"]:
                    self.register(controller, headers)
            except httpx.HTTPError:
                pass

    def leave(self, controller: str, token: str = "") -> None:
        self._quiet.set()
        body = {"worker_name": self.address}
        httpx.post(f"{controller}/unregister_worker", json=body, headers=bearer_header(token))

    def stop(self) -> None:
        """Die without a goodbye: heartbeats stop and connections are refused."""
        self._quiet.set()
        self.server.should_exit = True
        self.thread.join(10)
        if self._heart is not None:
            self._heart.join(5)
