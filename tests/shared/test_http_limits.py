"""Body limits in front of a real app served by uvicorn: size, chunked size, JSON depth."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from shared.http_limits import BodyLimits, json_depth_exceeds
from tests.support import free_port, wait_until


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return {"keys": sorted(body)}

    @app.post("/upload")
    async def upload(request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    return app


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = BodyLimits(_app(), max_bytes=1000, max_depth=8, path_limits={"/upload": 5000})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    assert wait_until(lambda: server.started, 10)
    yield base
    server.should_exit = True
    thread.join(5)


def test_a_body_within_the_limit_reaches_the_route(url: str) -> None:
    response = httpx.post(f"{url}/echo", json={"a": [1, {"b": 2}]})
    assert response.status_code == 200 and response.json() == {"keys": ["a"]}


def test_a_declared_length_over_the_limit_is_refused_with_413(url: str) -> None:
    response = httpx.post(f"{url}/echo", json={"a": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "body"


def test_a_chunked_body_is_cut_off_once_over_its_path_limit(url: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"y" * 500
            time.sleep(0.01)

    small = httpx.post(f"{url}/upload", content=iter([b"z" * 4000]))
    assert small.status_code == 200 and small.json() == {"size": 4000}
    big = httpx.post(f"{url}/upload", content=chunks())
    assert big.status_code == 413 and "5000 bytes" in big.json()["error"]["message"]


def test_json_nested_too_deep_is_a_400_not_a_crash(url: str) -> None:
    deep = "[" * 50 + "]" * 50
    response = httpx.post(
        f"{url}/echo", content=f'{{"a": {deep}}}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "nested deeper than 8" in response.json()["error"]["message"]


def test_brackets_inside_strings_do_not_count() -> None:
    assert not json_depth_exceeds(b'{"a": "[[[[[[[[[[[[\\"[[[["}', 2)
    assert json_depth_exceeds(b'{"a": [[[1]]]}', 3)


def test_a_path_s_larger_limit_is_for_uploads_not_for_json(url: str) -> None:
    response = httpx.post(f"{url}/upload", json={"a": "x" * 2000})
    assert response.status_code == 413


def test_a_lone_surrogate_is_a_400_but_a_pair_is_text(url: str) -> None:
    headers = {"content-type": "application/json"}
    lone = httpx.post(f"{url}/echo", content=b'{"a": "~\\udba5x"}', headers=headers)
    assert lone.status_code == 400 and "surrogate" in lone.json()["error"]["message"]
    pair = httpx.post(f"{url}/echo", content=b'{"\\ud83d\\ude00": 1}', headers=headers)
    assert pair.status_code == 200
