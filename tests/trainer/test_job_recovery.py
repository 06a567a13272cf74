"""The trainer task's bookkeeping around training: orphaned leases and the merge chain."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from services.trainer import tasks
from services.trainer.tasks import JobContext, queue_of
from shared.celery_app import MERGE_TASK, TRAIN_JOB_TASK
from shared.jobs.orphans import requeue_orphans
from shared.settings import CommonSettings
from shared.training import FineTuneRequest, new_job_record


class SentTasks:
    """Stands in for the Celery app: records what would go to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list, str]] = []

    def send_task(self, name: str, args: list, queue: str) -> None:
        self.sent.append((name, args, queue))


@pytest.fixture
def ctx(redis_url: str, redis_prefix: str) -> tuple[JobContext, SentTasks]:
    sent = SentTasks()
    common = CommonSettings(redis_url=redis_url, redis_key_prefix=redis_prefix)
    return JobContext(common, celery_app=sent), sent


def make_job(ctx: JobContext, job_id: str, **fields: Any) -> dict:
    request = FineTuneRequest(model="/models/base", training_file="/data/x.jsonl", gpus=2)
    record = {**new_job_record(job_id, request, f"/jobs/{job_id}"), **fields}
    ctx.jobs.create(record)
    return record


def test_a_job_whose_runner_died_is_sent_again_to_a_trainer_with_its_gpus(ctx: tuple) -> None:
    context, sent = ctx
    make_job(context, "ftjob-orphan", status="queued")
    runner_died = {}

    def die(run: Any) -> None:
        runner_died["at"] = run.record["lease_expires_at"]
        raise KeyboardInterrupt  # the process is gone: no terminal write, the lease stays

    runner = tasks.runner_for(context.jobs, "doomed", context.common)
    runner.lease_seconds = 0.2
    with pytest.raises(KeyboardInterrupt):
        runner.run("ftjob-orphan", die)
    make_job(context, "ftjob-done", status="succeeded")
    time.sleep(0.3)

    def resend(record: dict) -> None:
        context.celery.send_task(TRAIN_JOB_TASK, args=[record["id"]], queue=queue_of(record))

    sent_again = requeue_orphans(context.jobs, resend, notify=context.message)
    assert sent_again == ["ftjob-orphan"]
    assert sent.sent == [(TRAIN_JOB_TASK, ["ftjob-orphan"], "train-gpu-2")]
    events, _ = context.events.page("ftjob-orphan")
    assert "queued again" in events[0]["message"]
    record = context.jobs.get("ftjob-orphan")
    assert record["status"] == "running" and record["lease_owner"] is None


def test_a_trained_merge_job_is_handed_to_the_merger_and_stays_running(
    ctx: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    context, sent = ctx
    request = FineTuneRequest(
        model="/models/base", training_file="/data/x.jsonl", merge=True, suffix="paris"
    )
    context.jobs.create({**new_job_record("ftjob-m", request, str(tmp_path)), "status": "queued"})
    final = tmp_path / "final"

    def fake_training(*args: Any, **kwargs: Any) -> dict:
        return {"status": "succeeded", "final_dir": str(final), "trained_tokens": 10}

    monkeypatch.setattr("services.trainer.job.run_training", fake_training)
    record = tasks.run_job("ftjob-m", context, "me")
    assert record["status"] == "running" and record["handed_off_to"] == record["merge_id"]
    assert record["result_dir"] == str(final)
    merge = context.merges.get(record["merge_id"])
    assert merge["job_id"] == "ftjob-m"
    assert merge["adapter"] == str(final)
    assert merge["name"] == "base-paris"
    assert [(name, queue) for name, _, queue in sent.sent] == [(MERGE_TASK, "merge")]
    # A second delivery of the same job leaves it to the merger.
    assert tasks.run_job("ftjob-m", context, "me")["merge_id"] == record["merge_id"]
    assert len(sent.sent) == 1
