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
def ctx(redis_url: str, redis_prefix: str, tmp_path: Path) -> tuple[JobContext, SentTasks]:
    """Folders under tmp_path: a base model ``MODELS_DIR/base`` and ``IMPORT_DIR/x.jsonl``."""
    sent = SentTasks()
    common = CommonSettings(
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        models_dir=tmp_path / "models",
        jobs_dir=tmp_path / "jobs",
        datasets_dir=tmp_path / "datasets",
        import_dir=tmp_path / "imports",
    )
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "config.json").write_text("{}")
    (tmp_path / "imports").mkdir()
    (tmp_path / "imports" / "x.jsonl").write_text("{}\n")
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
        model=str(tmp_path / "models" / "base"),
        training_file=str(tmp_path / "imports" / "x.jsonl"),
        merge=True,
        suffix="paris",
    )
    output_dir = tmp_path / "jobs" / "ftjob-m"
    context.jobs.create({**new_job_record("ftjob-m", request, str(output_dir)), "status": "queued"})
    final = output_dir / "final"

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


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"training_file": "../../../../../../etc/passwd"}, "training_file: '../../../"),
        ({"training_file": "/etc/passwd"}, "not a file under an allowed folder"),
        ({"validation_file": "/etc/shadow"}, "not a file under an allowed folder"),
        ({"model": "/etc"}, "model: '/etc' is not a model folder under an allowed folder"),
    ],
)
def test_a_record_written_by_anyone_cannot_make_the_trainer_read_outside_the_roots(
    ctx: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fields: dict, says: str
) -> None:
    context, _ = ctx
    request = FineTuneRequest(
        model=str(tmp_path / "models" / "base"), training_file=str(tmp_path / "imports" / "x.jsonl")
    )
    record = new_job_record("ftjob-x", request, str(tmp_path / "jobs" / "ftjob-x"))
    record["request"].update(fields)
    context.jobs.create({**record, "status": "queued"})

    def no_training(*args: Any, **kwargs: Any) -> dict:
        raise AssertionError("trained on a file outside the allowed folders")

    monkeypatch.setattr("services.trainer.job.run_training", no_training)
    failed = tasks.run_job("ftjob-x", context, "me")
    assert failed["status"] == "failed"
    assert says in failed["error"]["message"]
    assert (
        "under an allowed folder (MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR)"
        in (failed["error"]["message"])
    )


def test_a_job_writes_only_into_its_own_folder_of_jobs_dir(
    ctx: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    context, _ = ctx
    request = FineTuneRequest(
        model=str(tmp_path / "models" / "base"), training_file=str(tmp_path / "imports" / "x.jsonl")
    )
    context.jobs.create({**new_job_record("ftjob-o", request, "/etc/cron.d"), "status": "queued"})
    monkeypatch.setattr("services.trainer.job.run_training", lambda *a, **k: {})
    failed = tasks.run_job("ftjob-o", context, "me")
    assert failed["status"] == "failed" and "not a folder of JOBS_DIR" in failed["error"]["message"]


def test_dataset_ids_resolve_to_their_built_file_under_the_roots(
    ctx: tuple, tmp_path: Path
) -> None:
    context, _ = ctx
    built = tmp_path / "datasets" / "ds-1"
    built.mkdir(parents=True)
    (built / "dataset.jsonl").write_text("{}\n")
    context.datasets.create({"id": "ds-1", "status": "succeeded", "path": str(built)})
    context.datasets.create({"id": "ds-2", "status": "succeeded", "path": "/etc"})
    assert tasks.resolve_file(context, "ds-1") == str(built / "dataset.jsonl")
    with pytest.raises(ValueError, match=r"ds-2 has no dataset\.jsonl under"):
        tasks.resolve_file(context, "ds-2")
