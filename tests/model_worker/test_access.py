"""Who may call a worker's routes, checked on the worker's own middleware over stand-in routes
(no model): the open paths, PUBLIC_METRICS, running open, and each protocol's 401."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from services.model_worker.app import install_limits
from services.model_worker.tgi_api import TGI_PATHS
from shared.settings import AuthSettings

KEYS = AuthSettings(controller_api_keys="user-key", worker_token="worker-token")
FASTCHAT_PATHS = [
    "/worker_generate",
    "/count_token",
    "/worker_get_status",
    "/model_details",
    "/worker_get_embeddings",
]


def stand_in_app(auth: AuthSettings, max_body_bytes: int = 1024) -> FastAPI:
    app = FastAPI()
    install_limits(app, auth, max_body_bytes)
    for path in [*FASTCHAT_PATHS, *TGI_PATHS]:
        app.post(path)(lambda: {"ok": True})
    for path in ("/health", "/metrics", "/info"):
        app.get(path)(lambda: {"ok": True})
    return app


async def call(app: FastAPI, method: str, path: str, key: str = "", **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        return await client.request(method, path, headers=headers, **kw)


@pytest.mark.parametrize("path", FASTCHAT_PATHS)
async def test_fastchat_routes_answer_401_in_fastchat_shape(path: str) -> None:
    app = stand_in_app(KEYS)
    missing = await call(app, "POST", path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["param"] == "Authorization"
    assert missing.json()["error_code"] == 40101
    wrong = await call(app, "POST", path, "guess")
    assert (wrong.status_code, wrong.json()["error_code"]) == (401, 40102)
    for key in ("user-key", "worker-token"):
        assert (await call(app, "POST", path, key)).status_code == 200


@pytest.mark.parametrize("path", sorted(TGI_PATHS - {"/info"}))
async def test_tgi_routes_answer_401_in_tgi_shape(path: str) -> None:
    app = stand_in_app(KEYS)
    missing = await call(app, "POST", path)
    assert missing.status_code == 401
    assert missing.json()["error_type"] == "authentication"
    assert "CONTROLLER_API_KEYS" in missing.json()["error"]
    assert (await call(app, "POST", path, "worker-token")).status_code == 200


async def test_health_is_open_and_metrics_only_when_public() -> None:
    closed = stand_in_app(KEYS)
    assert (await call(closed, "GET", "/health")).status_code == 200
    assert (await call(closed, "GET", "/metrics")).status_code == 401
    assert (await call(closed, "GET", "/info")).json()["error_type"] == "authentication"
    public = stand_in_app(KEYS.model_copy(update={"public_metrics": True}))
    assert (await call(public, "GET", "/metrics")).status_code == 200
    assert (await call(public, "POST", "/worker_generate")).status_code == 401


async def test_open_when_no_key_and_allowed_but_never_with_keys() -> None:
    open_app = stand_in_app(AuthSettings(allow_unauthenticated=True))
    assert (await call(open_app, "POST", "/worker_generate")).status_code == 200
    keyed = stand_in_app(KEYS.model_copy(update={"allow_unauthenticated": True}))
    assert (await call(keyed, "POST", "/worker_generate")).status_code == 401


async def test_a_refused_caller_gets_401_before_the_body_limit_and_a_keyed_one_413() -> None:
    app = stand_in_app(KEYS, max_body_bytes=100)
    body = {"json": {"prompt": "x" * 200}}
    assert (await call(app, "POST", "/count_token", **body)).status_code == 401
    assert (await call(app, "POST", "/count_token", "user-key", **body)).status_code == 413
