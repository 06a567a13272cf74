"""Merges end to end: controller ``/v1/merges`` and the trainer's hand-off -> Redis -> a real merger
Celery worker -> ``MODELS_DIR/<name>``, and the fine-tuning job a merge finishes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.celery_app import make_celery
from shared.job_records import EventLog, RecordStore
from shared.merging import MERGE_KIND, MergeRequest, record_merge, send_merge
from shared.redis_keys import RedisKeys
from shared.settings import DEFAULT_MODEL_NAME, CommonSettings
from shared.training import JOB_KIND
from tests.merger.builders import copy_folder, edit_json, make_base
from tests.support import TERMINAL, Stack, wait_record


class Stores:
    def __init__(self, redis_url: str, prefix: str) -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        keys = RedisKeys(prefix)
        self.jobs = RecordStore(client, keys, JOB_KIND)
        self.job_events = EventLog(client, keys, JOB_KIND)
        self.merges = RecordStore(client, keys, MERGE_KIND)

    def add_job(self, job_id: str, model: Path, result_dir: Path | None, **fields: Any) -> None:
        """A fine-tuning job record as the trainer leaves it (only the fields merges read)."""
        record = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "model": str(model),
            "method": "lora",
            "status": "running",
            "suffix": "paris",
            "fine_tuned_model": None,
            "finished_at": None,
            "error": None,
            "result_dir": str(result_dir) if result_dir else None,
            **fields,
        }
        self.jobs.create(record)

    def events(self, job_id: str) -> list[str]:
        events, _ = self.job_events.page(job_id, limit=100)
        return [e["message"] for e in reversed(events)]


@pytest.fixture
def stores(redis_url: str, redis_prefix: str) -> Stores:
    return Stores(redis_url, redis_prefix)


@pytest.fixture
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """A controller whose merges look for a cancel every 0.2 s; nothing serves the merge queue
    until the test starts the merger."""
    return start_stack({"MERGER_CANCEL_POLL_SECONDS": "0.2"})


def wait_merge(api: str, merge_id: str, timeout: float = 120) -> dict:
    return wait_record(f"{api}/v1/merges/{merge_id}", TERMINAL, timeout, interval=0.3)


def hand_to_merger(
    stores: Stores, celery: Any, request: MergeRequest, job_id: str
) -> dict[str, Any]:
    """What the trainer does for a job with ``merge: true``: record the merge, name it on the
    job (only that merge may finish the job), then send it."""
    record = record_merge(stores.merges, request, jobs=stores.jobs, job_id=job_id)
    stores.jobs.update(job_id, merge_id=record["id"], handed_off_to=record["id"])
    send_merge(celery, stores.merges, record)
    return record


def test_merges_run_on_the_worker_and_finish_their_jobs(
    stack: Stack, stores: Stores, tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    api = stack.url
    stack.start("merger")
    models = Path(stack.env["MODELS_DIR"])

    by_name = httpx.post(
        f"{api}/v1/merges",
        json={"base_model": str(tiny_model_dir), "adapter": str(adapter_dir), "name": "mine"},
    )
    assert by_name.status_code == 201, by_name.text
    assert by_name.json()["status"] == "queued" and by_name.json()["name"] == "mine"

    # The trainer's way: a job with merge: true hands its own result to a merge.
    stores.add_job("ftjob-merged", tiny_model_dir, adapter_dir)
    common = CommonSettings(
        redis_url=stack.env["REDIS_URL"], redis_key_prefix=stack.env["REDIS_KEY_PREFIX"]
    )
    celery = make_celery("test", common)
    request = MergeRequest(base_model=str(tiny_model_dir), adapter="ftjob-merged")
    from_job = hand_to_merger(stores, celery, request, "ftjob-merged")
    assert from_job["name"] == "tiny-llama-paris"  # the job's <base>-<suffix> model name

    # A merge that fails (base of another size) fails its job with the reason.
    wider = make_base(tiny_model_dir, tmp_path / "wider", hidden_size=128, intermediate_size=256)
    stores.add_job("ftjob-broken", tiny_model_dir, adapter_dir)
    broken_request = MergeRequest(base_model=str(wider), adapter=str(adapter_dir))
    broken = hand_to_merger(stores, celery, broken_request, "ftjob-broken")

    merged = wait_merge(api, by_name.json()["id"])
    assert merged["status"] == "succeeded", merged
    assert merged["output_dir"] == str(models / "mine")
    assert (models / "mine" / "config.json").is_file()
    assert merged["verification"]["relative_error"] < merged["verification"]["tolerance"]
    assert merged["duration_s"] > 0 and merged["finished_at"] >= merged["started_at"]

    assert wait_merge(api, from_job["id"])["status"] == "succeeded"
    job = stores.jobs.get("ftjob-merged")
    assert job["status"] == "succeeded" and job["fine_tuned_model"] == "tiny-llama-paris"
    assert job["merged_model_dir"] == str(models / "tiny-llama-paris") and job["finished_at"]
    assert any("Merged model tiny-llama-paris published" in m for m in stores.events(job["id"]))

    failed = wait_merge(api, broken["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "merge_failed"
    assert "hidden_size mismatch" in failed["error"]["message"]
    job = stores.jobs.get("ftjob-broken")
    assert job["status"] == "failed" and "hidden_size mismatch" in job["error"]["message"]
    assert stores.events("ftjob-broken")[-1].startswith("Merge failed: hidden_size mismatch")
    assert sorted(p.name for p in models.iterdir()) == ["mine", "tiny-llama-paris"]

    page = httpx.get(f"{api}/v1/merges", params={"limit": 2}).json()
    assert [r["id"] for r in page["data"]] == [broken["id"], from_job["id"]]
    assert page["has_more"] is True
    rest = httpx.get(f"{api}/v1/merges", params={"after": from_job["id"]}).json()
    assert [r["id"] for r in rest["data"]] == [by_name.json()["id"]] and not rest["has_more"]

    taken = httpx.post(
        f"{api}/v1/merges",
        json={"base_model": str(tiny_model_dir), "adapter": str(adapter_dir), "name": "mine"},
    )
    assert taken.status_code == 400 and taken.json()["error"]["param"] == "name"


def test_the_api_names_every_bad_field(
    stack: Stack, stores: Stores, tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    api = stack.url
    base, adapter = str(tiny_model_dir), str(adapter_dir)
    quantized = copy_folder(tiny_model_dir, tmp_path / "nf4")
    edit_json(quantized / "config.json", quantization_config={"load_in_4bit": True})
    stores.add_job("ftjob-running", tiny_model_dir, None)
    stores.add_job("ftjob-full", tiny_model_dir, tiny_model_dir, status="succeeded")
    (Path(stack.env["MODELS_DIR"]) / "taken").mkdir(parents=True)

    cases = [
        ({"base_model": str(tmp_path), "adapter": adapter}, "base_model", "no config.json"),
        ({"base_model": str(quantized), "adapter": adapter}, "base_model", "is quantized"),
        ({"base_model": base, "adapter": str(tmp_path)}, "adapter", "no adapter_config.json"),
        ({"base_model": base, "adapter": "ftjob-nope"}, "adapter", "unknown fine-tuning job"),
        ({"base_model": base, "adapter": "ftjob-running"}, "adapter", "has not finished"),
        ({"base_model": base, "adapter": "ftjob-full"}, "adapter", "trained a full model"),
        ({"base_model": base, "adapter": adapter, "job_id": "ftjob-x"}, "job_id", "not a req"),
        ({"base_model": "/etc", "adapter": adapter}, "base_model", "under an allowed folder"),
        ({"base_model": base, "adapter": "/etc"}, "adapter", "under an allowed folder"),
        ({"base_model": base, "adapter": adapter, "name": "../up"}, "name", "not a valid"),
        ({"base_model": base, "adapter": adapter, "name": "taken"}, "name", "already exists"),
        (
            {"base_model": base, "adapter": adapter, "name": "taken", "overwrite": True},
            "overwrite",
            "MODELS_ALLOW_OVERWRITE",
        ),
        ({"base_model": base, "adapter": adapter, "name": DEFAULT_MODEL_NAME}, "name", "default"),
        ({"base_model": base, "adapter": adapter, "dtype": "int4"}, "dtype", "bf16"),
        ({"base_model": base, "adapter": adapter, "max_shard_size": "big"}, "max_shard_size", ""),
        ({"base_model": base, "adapter": adapter, "colour": 1}, "colour", "not permitted"),
        ({"adapter": adapter}, "base_model", "required"),
    ]
    for body, param, text in cases:
        answer = httpx.post(f"{api}/v1/merges", json=body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param and text in error["message"], (body, error)

    # Nothing serves the queue here: the merge stays queued, and can be cancelled.
    stores.jobs.update("ftjob-running", status="succeeded", result_dir=adapter)
    stores.jobs.update("ftjob-running", fine_tuned_model="tiny-llama-paris")
    queued = httpx.post(f"{api}/v1/merges", json={"base_model": base, "adapter": "ftjob-running"})
    assert queued.status_code == 201, queued.text
    assert queued.json()["name"] == "tiny-llama-paris" and queued.json()["status"] == "queued"
    cancelled = httpx.post(f"{api}/v1/merges/{queued.json()['id']}/cancel").json()
    assert cancelled["cancel_requested"] is True

    missing = httpx.get(f"{api}/v1/merges/merge-nope")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "merge_id"
    assert httpx.get(f"{api}/v1/merges", params={"limit": 0}).status_code == 400
