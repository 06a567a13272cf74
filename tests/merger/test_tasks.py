"""run_merge (the Celery task's body) against a real Redis: cancel, leases, re-delivery."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.merger import merge as merge_module
from services.merger.tasks import MergeContext, run_merge
from shared.merging import MergeRequest, new_merge_record
from shared.settings import DEFAULT_MODEL_NAME, CommonSettings


@pytest.fixture
def ctx(redis_url: str, redis_prefix: str, tmp_path: Path) -> MergeContext:
    common = CommonSettings(
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        models_dir=tmp_path / "models",
        job_cancel_poll_seconds=0.001,
    )
    return MergeContext(common)


def add_merge(ctx: MergeContext, base: Path, adapter: Path, **fields: object) -> str:
    """A merge a fine-tuning job handed its adapter to, as the trainer's ``merge: true`` does."""
    request = MergeRequest(base_model=str(base), adapter=str(adapter))
    record = {**new_merge_record("merge-t", request, "merged", job_id="ftjob-t"), **fields}
    ctx.merges.create(record)
    ctx.jobs.create(
        {
            "id": "ftjob-t",
            "object": "fine_tuning.job",
            "status": "running",
            "model": "m",
            "merge_id": "merge-t",
        }
    )
    return record["id"]


@pytest.fixture
def merge_id(ctx: MergeContext, tiny_model_dir: Path, adapter_dir: Path) -> str:
    """A queued merge of the tiny model's adapter, handed over by its job (add_merge)."""
    return add_merge(ctx, tiny_model_dir, adapter_dir)


def test_a_cancel_stops_the_merge_and_the_job(
    ctx: MergeContext, merge_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fold = merge_module._fold

    def cancel_while_merging(peft_model: object) -> object:
        ctx.merges.update(merge_id, cancel_requested=True)  # POST /v1/merges/{id}/cancel
        return fold(peft_model)

    monkeypatch.setattr(merge_module, "_fold", cancel_while_merging)
    record = run_merge(merge_id, ctx, "me")
    assert record["status"] == "cancelled" and record["progress"]["phase"] == "merge"
    assert not ctx.models_dir.exists() or list(ctx.models_dir.iterdir()) == []
    assert ctx.jobs.get("ftjob-t")["status"] == "cancelled"


def test_a_live_lease_elsewhere_leaves_the_merge_alone(
    ctx: MergeContext, tiny_model_dir: Path, adapter_dir: Path
) -> None:
    merge_id = add_merge(
        ctx,
        tiny_model_dir,
        adapter_dir,
        status="running",
        lease_owner="other:1",
        lease_expires_at=time.time() + 60,
    )
    record = run_merge(merge_id, ctx, "me")
    assert record["status"] == "running" and record["lease_owner"] == "other:1"
    assert not (ctx.models_dir / "merged").exists()


def test_a_redelivered_merge_that_had_published_reports_without_merging_again(
    ctx: MergeContext, merge_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_merge(merge_id, ctx, "first:1")
    assert first["status"] == "succeeded", first
    # The first worker died after publishing, before reporting: the record still says running.
    ctx.merges.update(
        merge_id, status="running", lease_owner="first:1", lease_expires_at=time.time() - 1
    )

    def merge_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("merged a second time")

    monkeypatch.setattr(merge_module, "merge_lora", merge_again)
    record = run_merge(merge_id, ctx, "second:2")
    assert record["status"] == "succeeded" and record["output_dir"] == first["output_dir"]
    assert record["verification"] == first["verification"]
    job = ctx.jobs.get("ftjob-t")
    assert job["status"] == "succeeded" and job["merged_model_dir"] == first["output_dir"]


def test_a_merge_naming_a_job_that_is_not_its_own_leaves_that_job_alone(
    ctx: MergeContext, tiny_model_dir: Path, adapter_dir: Path
) -> None:
    finished = {"id": "ftjob-done", "object": "fine_tuning.job", "status": "succeeded"}
    ctx.jobs.create({**finished, "model": "m", "fine_tuned_model": "mine"})
    request = MergeRequest(base_model=str(tiny_model_dir), adapter=str(adapter_dir))
    record = new_merge_record("merge-x", request, "merged", job_id="ftjob-done")
    ctx.merges.create({**record, "cancel_requested": True})
    assert run_merge("merge-x", ctx, "me")["status"] == "cancelled"
    job = ctx.jobs.get("ftjob-done")
    assert job["status"] == "succeeded" and job["fine_tuned_model"] == "mine"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"base_model": "/etc"}, "base_model: '/etc' is not a model folder under an allowed"),
        ({"adapter": "/etc"}, "adapter: '/etc' is not a LoRA adapter folder under an allowed"),
        ({"name": "../escaped"}, "is not a valid model name"),
        ({"name": DEFAULT_MODEL_NAME}, "the default model"),
        ({"overwrite": True}, "MODELS_ALLOW_OVERWRITE"),
    ],
)
def test_a_record_written_by_anyone_reads_and_writes_only_allowed_folders(
    ctx: MergeContext, tiny_model_dir: Path, adapter_dir: Path, fields: dict, says: str
) -> None:
    """The merger checks the record itself: whatever wrote it, nothing outside the allowed
    folders is read, only MODELS_DIR/<name> is written, published models stay."""
    merge_id = add_merge(ctx, tiny_model_dir, adapter_dir)
    ctx.merges.update(merge_id, **fields)
    record = run_merge(merge_id, ctx, "me")
    assert record["status"] == "failed", record
    assert says in record["error"]["message"]
    assert not ctx.models_dir.exists() or list(ctx.models_dir.iterdir()) == []
