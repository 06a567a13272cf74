"""``/v1/datasets`` on a real controller process: validation, records in Redis, queueing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.celery_app import INGEST_QUEUE
from shared.datasets import DATASET_SOURCE_KEYS
from tests.support import post_json_text


def test_create_get_list_and_cancel(
    api: str,
    conv_file: Path,
    tiny_model_dir: Path,
    queued: Callable[[str], list[dict]],
    tmp_path: Path,
) -> None:
    body = {
        "sources": [str(conv_file), "alpaca"],
        "tokenizer": str(tiny_model_dir),
        "max_length": 512,
    }
    created = httpx.post(f"{api}/v1/datasets", json=body)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["id"].startswith("ds-")
    assert record["object"] == "dataset"
    assert record["status"] == "queued"
    assert record["spec"]["sources"] == [str(conv_file), "alpaca"]
    assert record["path"] == str(tmp_path / "datasets" / record["id"])

    tasks = queued(INGEST_QUEUE)
    assert [t["headers"]["task"] for t in tasks] == ["ingest.build_dataset"]
    assert record["id"] in tasks[0]["headers"]["argsrepr"]

    assert httpx.get(f"{api}/v1/datasets/{record['id']}").json() == record
    listing = httpx.get(f"{api}/v1/datasets").json()
    assert listing["object"] == "list"
    assert [d["id"] for d in listing["data"]] == [record["id"]]
    assert listing["has_more"] is False

    # No ingestor runs here: the build had not started, so it is cancelled at once.
    cancelled = httpx.post(f"{api}/v1/datasets/{record['id']}/cancel").json()
    assert cancelled["cancel_requested"] is True
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None


def test_all_expands_to_the_eight_sources(api: str) -> None:
    record = httpx.post(f"{api}/v1/datasets", json={"sources": ["all"]}).json()
    assert record["spec"]["sources"] == list(DATASET_SOURCE_KEYS)
    assert len(DATASET_SOURCE_KEYS) == 8


def test_upload_a_file_as_a_source(api: str, conv_file: Path) -> None:
    with conv_file.open("rb") as handle:
        response = httpx.post(
            f"{api}/v1/datasets",
            files={"file": ("my data.jsonl", handle, "application/jsonl")},
            data={"sources": "biology", "max_length": "256"},
        )
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["spec"]["max_length"] == 256
    assert record["spec"]["sources"][0] == "biology"
    uploaded = Path(record["spec"]["sources"][1])
    assert uploaded.name == "my_data.jsonl"
    assert uploaded.parent == Path(record["path"]) / "uploads"
    assert uploaded.read_bytes() == conv_file.read_bytes()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"sources": []}, "sources"),
        ({"sources": ["wikipedia"]}, "sources[0]"),
        ({"sources": ["alpaca", "/no/such/file.json"]}, "sources[1]"),
        ({"sources": ["alpaca"], "max_length": 0}, "max_length"),
        ({"sources": ["alpaca"], "max_length": "long"}, "max_length"),
        ({"sources": ["alpaca"], "tokenizer": "/no/such/tokenizer"}, "tokenizer"),
        ({"sources": ["alpaca"], "colour": "blue"}, "colour"),
        ({}, "sources"),
    ],
)
def test_bad_requests_are_400_naming_the_field(api: str, body: dict, param: str) -> None:
    response = httpx.post(f"{api}/v1/datasets", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_dataset")
    assert error["param"] == param
    assert f"{param}: " in error["message"]


def test_form_fields_are_checked_like_json_ones(api: str) -> None:
    response = httpx.post(
        f"{api}/v1/datasets", files={"x": ("x", b"")}, data={"sources": "[1", "seed": "-1"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "sources"
    response = httpx.post(
        f"{api}/v1/datasets", files={"x": ("x", b"")}, data={"sources": "math", "seed": "-1"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seed"


def test_malformed_json_and_unknown_ids(api: str) -> None:
    bad = post_json_text(f"{api}/v1/datasets", b"{")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "body"
    missing = httpx.get(f"{api}/v1/datasets/ds-nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "dataset_not_found"
    assert httpx.post(f"{api}/v1/datasets/ds-nope/cancel").status_code == 404
    assert httpx.get(f"{api}/v1/datasets", params={"limit": 0}).status_code == 400


def test_records_survive_a_controller_restart(
    controller: Callable[..., str], folders: dict[str, str]
) -> None:
    first = controller(env=folders)
    record = httpx.post(f"{first}/v1/datasets", json={"sources": ["math"]}).json()
    second = controller(env=folders)
    assert httpx.get(f"{second}/v1/datasets/{record['id']}").json()["id"] == record["id"]


def test_api_keys_guard_datasets_too(
    controller: Callable[..., str], folders: dict[str, str]
) -> None:
    api = controller("--api-keys", "k1", env=folders)
    assert httpx.get(f"{api}/v1/datasets").status_code == 401
    ok = httpx.get(f"{api}/v1/datasets", headers={"Authorization": "Bearer k1"})
    assert ok.status_code == 200
