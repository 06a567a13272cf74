"""shared/merging.py: request validation, default names, and queue_merge's record."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.celery_app import MERGE_TASK
from shared.merging import MergeRequest, default_merge_name, queue_merge, record_merge


def request(**fields: Any) -> MergeRequest:
    return MergeRequest.model_validate({"base_model": "/models/base", "adapter": "/a", **fields})


@pytest.mark.parametrize(
    ("adapter", "job", "name"),
    [
        ("/adapters/my-lora", None, "my-lora"),
        ("/checkpoints/ftjob-abc/final/", None, "ftjob-abc"),
        ("/x/odd name!", None, "odd-name-"),
        ("ftjob-1", {"id": "ftjob-1", "fine_tuned_model": "base-paris"}, "base-paris"),
        ("/a", {"id": "ftjob-1", "model": "org/Base", "suffix": None}, "Base-ftjob-1"),
        ("/a", {"id": "ftjob-1", "model": "/m/Base", "suffix": "v 2"}, "Base-v-2"),
    ],
)
def test_default_names(adapter: str, job: dict | None, name: str) -> None:
    assert default_merge_name(request(adapter=adapter), job) == name


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "a/b"}, "name"),
        ({"name": ".hidden"}, "name"),
        ({"dtype": "int8"}, "dtype"),
        ({"max_shard_size": "5 parsecs"}, "max_shard_size"),
        ({"adapter": ""}, "adapter"),
    ],
)
def test_invalid_requests_name_the_field(fields: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        request(**fields)
    assert info.value.errors()[0]["loc"] == (field,)


def test_a_client_cannot_link_a_merge_to_a_job() -> None:
    """Only the trainer's hand-off (``record_merge(job_id=...)``) names the job a merge ends."""
    with pytest.raises(ValidationError, match="job_id is not a request field"):
        request(job_id="ftjob-1")
    store = FakeStore()
    record = record_merge(store, request(), job_id="ftjob-1")
    assert record["job_id"] == "ftjob-1" and "job_id" not in record["request"]


class FakeCelery:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple] = []
        self.fail = fail

    def send_task(self, name: str, args: list, queue: str) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((name, args, queue))


class FakeStore(dict):
    def create(self, record: dict) -> None:
        self[record["id"]] = record

    def update(self, record_id: str, **fields: Any) -> dict:
        self[record_id] = {**self[record_id], **fields}
        return self[record_id]


def test_queue_merge_records_then_sends_and_says_when_it_could_not() -> None:
    store, celery = FakeStore(), FakeCelery()
    jobs = FakeStore({"ftjob-1": {"id": "ftjob-1", "fine_tuned_model": "base-paris"}})
    record = queue_merge(celery, store, request(adapter="ftjob-1"), jobs=jobs)
    assert record["status"] == "queued" and record["name"] == "base-paris"
    assert store[record["id"]] == record
    assert celery.sent == [(MERGE_TASK, [record["id"]], "merge")]

    with pytest.raises(ConnectionError):
        queue_merge(FakeCelery(fail=True), store, request(name="x"))
    failed = [r for r in store.values() if r["name"] == "x"]
    assert failed[0]["status"] == "failed" and failed[0]["error"]["code"] == "queue_unavailable"
