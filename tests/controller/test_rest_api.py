"""What every /v1 REST API of the controller shares: request schemas in the OpenAPI document,
one error shape for bad bodies and queries, the same paging; and the controller's command line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.controller.__main__ import parse_args
from services.controller.app import create_app
from shared.settings import CommonSettings, ControllerSettings
from tests.support import REPO_ROOT, post_json_text

# Each create route, and the code of its 400s.
CREATE_ROUTES = {
    "/v1/fine_tuning/jobs": "invalid_fine_tuning_job",
    "/v1/merges": "invalid_merge",
    "/v1/evals": "invalid_evaluation",
    "/v1/datasets": "invalid_dataset",
    "/v1/models/tiny/deploy": "invalid_deployment",
}


def _schema_name(schema: dict) -> str:
    ref = schema.get("$ref") or next(s["$ref"] for s in schema["anyOf"] if "$ref" in s)
    return ref.rsplit("/", 1)[-1]


def test_request_schemas_are_in_the_openapi_document() -> None:
    document = create_app(CommonSettings(), ControllerSettings()).openapi()
    schemas = document["components"]["schemas"]
    for path in ("/v1/fine_tuning/jobs", "/v1/merges", "/v1/evals", "/v1/models/{name}/deploy"):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        name = _schema_name(content["application/json"]["schema"])
        assert "properties" in schemas[name], path
    assert "preset" in schemas["FineTuningJobRequest"]["properties"]
    for path, name in (
        ("/v1/chat/completions", "ChatCompletionRequest"),
        ("/v1/completions", "CompletionRequest"),
    ):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        assert _schema_name(content["application/json"]["schema"]) == name
        assert {"model", "max_tokens", "seed", "stream"} <= set(schemas[name]["properties"])
    datasets = document["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert datasets["application/json"]["schema"]["title"] == "DatasetSpec"
    assert "file" in datasets["multipart/form-data"]["schema"]["properties"]
    # Every operation takes a Bearer credential but the health checks.
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "security" not in document["paths"]["/list_workers"]["get"]
    job = document["paths"]["/v1/fine_tuning/jobs/{fine_tuning_job_id}"]["get"]
    assert job["parameters"][0]["name"] == "fine_tuning_job_id"


@pytest.mark.parametrize(("path", "code"), CREATE_ROUTES.items())
def test_bad_bodies_are_openai_400s_naming_the_body(api: str, path: str, code: str) -> None:
    for content in (b"{", b'{"model": '):
        response = post_json_text(f"{api}{path}", content)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert (error["param"], error["code"]) == ("body", code), (path, error)
        assert error["message"].startswith("body: malformed JSON")
    if path.endswith("/deploy"):
        return  # its body is optional
    missing = httpx.post(f"{api}{path}").json()["error"]
    assert (missing["param"], missing["code"]) == ("body", code), (path, missing)
    wrong_shape = httpx.post(f"{api}{path}", json=[1, 2]).json()["error"]
    assert (wrong_shape["param"], wrong_shape["type"]) == ("body", "invalid_request_error")


def test_request_bodies_are_limited(controller: Callable[..., str], folders: dict) -> None:
    env = {**folders, "CONTROLLER_MAX_BODY_BYTES": "2000", "CONTROLLER_MAX_UPLOAD_BYTES": "9000"}
    api = controller(env=env)
    chat = {"model": "m", "messages": [{"role": "user", "content": "x" * 3000}]}
    too_large = httpx.post(f"{api}/v1/chat/completions", json=chat)
    assert too_large.status_code == 413
    assert too_large.json()["error"]["param"] == "body"
    deep = b'{"model": "m", "messages": ' + b"[" * 100 + b"]" * 100 + b"}"
    too_deep = post_json_text(f"{api}/v1/chat/completions", deep)
    assert too_deep.status_code == 400 and "nested deeper" in too_deep.json()["error"]["message"]
    # Uploads get their own, larger limit: this one is over the general one, under its own.
    upload = httpx.post(
        f"{api}/v1/datasets",
        files={"file": ("mine.jsonl", b"{}" + b" " * 4000 + b"\n")},
        data={"spec": "{}"},
    )
    assert upload.status_code != 413, upload.text
    bigger = httpx.post(f"{api}/v1/datasets", files={"file": ("big.jsonl", b" " * 10_000)})
    assert bigger.status_code == 413


def test_a_json_body_sent_as_a_form_still_counts(api: str, tiny_model_dir: Path) -> None:
    """``curl -d '{...}'`` labels JSON as a form; the APIs read it as JSON, as they always did."""
    response = httpx.post(
        f"{api}/v1/evals",
        content=f'{{"model": "{tiny_model_dir}", "tasks": ["a"]}}'.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["tasks"] == [{"task": "a", "num_fewshot": None}]


@pytest.mark.parametrize(
    "path", ["/v1/datasets", "/v1/fine_tuning/jobs", "/v1/merges", "/v1/evals"]
)
def test_list_paging_is_checked_the_same_everywhere(api: str, path: str) -> None:
    bad = (({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"after": "n"}, "after"))
    for params, param in bad:
        response = httpx.get(f"{api}{path}", params=params)
        assert response.status_code == 400, (path, params, response.text)
        error = response.json()["error"]
        assert error["param"] == param and error["message"].startswith(f"{param}: ")
    empty = httpx.get(f"{api}{path}").json()
    assert empty == {"object": "list", "data": [], "has_more": False}


def test_the_command_line_has_every_setting_as_a_flag() -> None:
    common, settings, auth = parse_args(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "1234",
            "--dispatch-method",
            "lottery",
            "--heart-beat-expiration",
            "2.5",
            "--api-keys",
            "k1,k2",
            "--worker-token",
            "wt",
            "--trusted-worker-networks",
            "10.0.0.0/8",
            "--public-metrics",
            "--worker-retries",
            "1",
            "--worker-connect-timeout",
            "0.5",
            "--redis-url",
            "redis://elsewhere:6379/1",
            "--redis-key-prefix",
            "t:",
            "--log-level",
            "DEBUG",
        ]
    )
    assert (settings.host, settings.port, settings.dispatch_method) == ("0.0.0.0", 1234, "lottery")
    assert settings.heart_beat_expiration == 2.5
    assert (settings.worker_retries, settings.worker_connect_timeout) == (1, 0.5)
    assert (auth.controller_api_keys, auth.worker_token) == ("k1,k2", "wt")
    assert (auth.trusted_worker_networks, auth.public_metrics) == ("10.0.0.0/8", True)
    assert (common.redis_url, common.redis_key_prefix) == ("redis://elsewhere:6379/1", "t:")
    assert common.log_level == "DEBUG"
    shown = subprocess.run(
        [sys.executable, "-m", "services.controller", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for flag in (
        "--port",
        "--dispatch-method",
        "--heart-beat-expiration",
        "--controller-api-keys",
        "--api-keys",
        "--worker-token",
        "--allow-unauthenticated",
        "--trusted-worker-networks",
        "--public-metrics",
        "--max-body-bytes",
    ):
        assert flag in shown
