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


def refusal(api: str, body: dict) -> dict:
    response = httpx.post(f"{api}/v1/datasets", json=body)
    assert response.status_code == 400, response.text
    return response.json()["error"]


def test_sources_outside_the_allowed_folders_are_refused_like_missing_ones(
    api: str, tmp_path: Path
) -> None:
    """/etc/shadow exists, /etc/no-such-file does not, ../ climbs out of DATASETS_DIR: all get
    one answer."""
    climbing = str(tmp_path / "datasets" / ("../" * 12) / "etc" / "shadow")
    answers = []
    for source in ("/etc/shadow", "/etc/no-such-file", climbing, "~root/.bashrc"):
        error = refusal(api, {"sources": ["alpaca", source]})
        assert error["param"] == "sources[1]"
        answers.append(error["message"].replace(repr(source), "<source>"))
    assert len(set(answers)) == 1, answers
    assert "under an allowed folder (MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR)" in answers[0]


def test_a_symlink_out_of_an_allowed_folder_is_refused(api: str, tmp_path: Path) -> None:
    link = tmp_path / "passwd.json"  # under IMPORT_DIR
    link.symlink_to("/etc/passwd")
    error = refusal(api, {"sources": [str(link)]})
    assert error["param"] == "sources[0]" and "under an allowed folder" in error["message"]


def test_internal_and_off_list_urls_are_refused(api: str) -> None:
    for url, says in (
        ("http://127.0.0.1:21001/v1/models", "is not in INGEST_URL_ALLOWED_HOSTS"),
        ("http://169.254.169.254/latest/meta-data", "is not in INGEST_URL_ALLOWED_HOSTS"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://huggingface.co/x", "only http and https"),
    ):
        error = refusal(api, {"sources": [url]})
        assert error["param"] == "sources[0]" and says in error["message"], (url, error)


def test_the_tokenizer_is_a_folder_under_the_roots(api: str) -> None:
    error = refusal(api, {"sources": ["alpaca"], "tokenizer": "/etc"})
    assert error["param"] == "tokenizer" and "under an allowed folder" in error["message"]


def post_upload(api: str, files: list[tuple[str, bytes]], **fields: str) -> httpx.Response:
    parts = [("file", (name, content, "application/octet-stream")) for name, content in files]
    return httpx.post(f"{api}/v1/datasets", files=parts, data=fields)


def leftovers(folders: dict) -> list[Path]:
    return sorted(Path(folders["DATASETS_DIR"]).rglob("*"))


def test_an_upload_refused_by_a_later_field_leaves_nothing_behind(
    api: str, folders: dict, conv_file: Path
) -> None:
    content = conv_file.read_bytes()
    for fields, param in (
        ({"sources": "alpaca", "seed": "-1"}, "seed"),
        ({"sources": "alpaca,/etc/shadow"}, "sources[1]"),
        ({"sources": "alpaca", "tokenizer": "/no/such/tokenizer"}, "tokenizer"),
    ):
        response = post_upload(api, [("mine.jsonl", content)], **fields)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
        assert leftovers(folders) == [], fields


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ([("run.sh", b"#!/bin/sh\n")], "is not a dataset file"),
        ([("data.json", b"\x7fELF binary")], "does not look like a JSON"),
        ([("data.parquet", b"[1, 2]")], "does not look like a parquet"),
        ([("data.zip", b"not a zip")], "does not look like a archive"),
        ([("empty.jsonl", b"")], "is empty"),
        ([("big.jsonl", b"{}" + b" " * 5000)], "larger than 4096 bytes"),
        ([("a.jsonl", b"{}" + b" " * 3000), ("b.jsonl", b"{}" + b" " * 3000)], "in all"),
    ],
)
def test_uploads_are_checked_while_they_stream(
    controller: Callable[..., str], folders: dict, files: list, says: str
) -> None:
    limits = {"INGEST_UPLOAD_MAX_FILE_BYTES": "4096", "INGEST_UPLOAD_MAX_TOTAL_BYTES": "5000"}
    api = controller(env={**folders, **limits})
    response = post_upload(api, files, sources="alpaca")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "file" and says in error["message"], error
    assert leftovers(folders) == []


def test_uploads_with_the_same_name_are_kept_apart(api: str, conv_file: Path) -> None:
    content = conv_file.read_bytes()
    response = post_upload(api, [("d.jsonl", content), ("d.jsonl", content)])
    assert response.status_code == 201, response.text
    uploaded = [Path(source) for source in response.json()["spec"]["sources"]]
    assert [p.name for p in uploaded] == ["d.jsonl", "d_2.jsonl"]
    assert all(p.read_bytes() == content for p in uploaded)
    assert not any(p.name.startswith(".upload-") for p in uploaded[0].parents)
