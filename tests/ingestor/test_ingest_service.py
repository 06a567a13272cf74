"""Datasets built through the controller's REST API by a real ingestor Celery worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.ingestor.tasks import build_dataset, dataset_store
from shared.datasets import DatasetSpec, new_dataset_record
from shared.settings import CommonSettings
from tests.ingestor.builders import alpaca_parquet, alpaca_rows, camel_chat_record, camel_chat_tar
from tests.support import Stack, wait_record


@pytest.fixture
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """A controller; the test starts the ingestor behind it when it wants it to work."""
    return start_stack()


def wait_status(api: str, dataset_id: str, timeout: float = 120) -> dict:
    return wait_record(f"{api}/v1/datasets/{dataset_id}", timeout=timeout)


def test_dataset_built_by_the_ingestor_service(
    stack: Stack, tmp_path: Path, tiny_model_dir: Path
) -> None:
    api = stack.url
    stack.start("ingestor")
    chats = camel_chat_tar(
        tmp_path / "src" / "ai_society_chat.tar.gz",
        [camel_chat_record(3, start=i * 10) for i in range(12)],
    )
    alpaca = alpaca_parquet(tmp_path / "src" / "alpaca.parquet", alpaca_rows(20))
    body = {
        "sources": [str(chats), str(alpaca)],
        "tokenizer": str(tiny_model_dir),
        "max_length": 256,
    }
    created = httpx.post(f"{api}/v1/datasets", json=body)
    assert created.status_code == 201, created.text
    record = wait_status(api, created.json()["id"])
    assert record["status"] == "succeeded", record
    manifest = record["manifest"]
    assert manifest["max_length"] == 256
    dataset = Path(record["path"]) / "dataset.jsonl"
    lines = dataset.read_text().splitlines()
    assert len(lines) == manifest["records"] > 0
    assert manifest["sha256"]
    assert set(record["progress"]) >= {"convert", "split", "merge"}


def test_cancel_before_the_worker_picks_it_up(stack: Stack, tmp_path: Path) -> None:
    api = stack.url
    chats = camel_chat_tar(tmp_path / "src" / "chats.tar.gz", [camel_chat_record(2)])
    created = httpx.post(f"{api}/v1/datasets", json={"sources": [str(chats)]}).json()
    httpx.post(f"{api}/v1/datasets/{created['id']}/cancel").raise_for_status()
    stack.start("ingestor")
    assert wait_status(api, created["id"])["status"] == "cancelled"


def test_a_bad_source_fails_the_dataset_with_a_reason(
    stack: Stack, tmp_path: Path, tiny_model_dir: Path
) -> None:
    api = stack.url
    stack.start("ingestor")
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"this is not an archive")
    created = httpx.post(
        f"{api}/v1/datasets",
        json={"sources": [str(broken)], "tokenizer": str(tiny_model_dir), "max_length": 128},
    ).json()
    record = wait_status(api, created["id"])
    # Nothing could be read: the build fails and says why; the worker goes on serving.
    assert record["status"] == "failed", record
    assert record["error"]["message"]
    rejected = (Path(record["path"]) / "rejected.jsonl").read_text()
    assert "corrupt_archive" in rejected


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"sources": ["/etc/passwd"]}, "sources[0]"),
        ({"sources": ["alpaca", "../../../../../../../etc"]}, "sources[1]"),
        ({"sources": ["http://127.0.0.1:9/x.json"]}, "sources[0]"),
        ({"sources": ["alpaca"], "tokenizer": "/etc"}, "tokenizer"),
    ],
)
def test_a_record_written_by_anyone_cannot_make_the_ingestor_read_outside_the_roots(
    redis_url: str, redis_prefix: str, tmp_path: Path, spec: dict, param: str
) -> None:
    """The ingestor checks the record itself, whoever wrote it (the controller checks too)."""
    common = CommonSettings(
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        datasets_dir=tmp_path / "datasets",
        import_dir=tmp_path / "imports",
    )
    store = dataset_store(common)
    record = new_dataset_record("ds-forged", DatasetSpec(**spec), str(tmp_path / "datasets" / "x"))
    store.create(record.model_dump())
    failed = build_dataset("ds-forged", store, common)
    assert failed["status"] == "failed", failed
    assert failed["error"]["param"] == param
    assert not (tmp_path / "datasets").exists()


def test_the_ingestor_writes_only_into_a_folder_of_datasets_dir(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    common = CommonSettings(
        redis_url=redis_url, redis_key_prefix=redis_prefix, datasets_dir=tmp_path / "datasets"
    )
    store = dataset_store(common)
    record = new_dataset_record("ds-elsewhere", DatasetSpec(sources=["alpaca"]), str(tmp_path))
    store.create(record.model_dump())
    failed = build_dataset("ds-elsewhere", store, common)
    assert failed["status"] == "failed" and "DATASETS_DIR" in failed["error"]["message"]
