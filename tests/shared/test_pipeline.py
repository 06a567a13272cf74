"""The one-call job's hand-offs (``shared/pipeline.py``) on real Redis records: stages in order,
only the holder moves a job on, a built dataset releases its job to the trainer once."""

from __future__ import annotations

import pytest

from shared import pipeline
from shared.settings import CommonSettings
from shared.stores import Stores


@pytest.fixture
def stores(redis_url: str, redis_prefix: str) -> Stores:
    return Stores.connect(CommonSettings(redis_url=redis_url, redis_key_prefix=redis_prefix))


def _job(stores: Stores, deploy: bool = True) -> dict:
    stages = pipeline.new_stages("ds-1", merge=True, deploy=deploy)
    record = {"id": "ftjob-1", "status": "queued", "stages": stages, "stage": "ingest",
              "handed_off_to": "ds-1", "request": {"gpus": 0}}  # fmt: skip
    stores.jobs.create(record)
    return record


def _messages(stores: Stores, stage: str) -> list[str]:
    events, _ = stores.job_events.page("ftjob-1", limit=100)
    return [e["message"] for e in events if e.get("stage") == stage]


def test_stages_are_those_the_job_runs_in_order() -> None:
    assert list(pipeline.new_stages("ds-1", True, True)) == ["ingest", "train", "merge", "deploy"]
    assert list(pipeline.new_stages(None, False, True)) == ["train", "deploy"]
    assert pipeline.new_stages("ds-2", False, False)["ingest"]["id"] == "ds-2"


def test_a_built_dataset_releases_its_job_to_the_trainer_once(stores: Stores) -> None:
    _job(stores)
    sent: list[str] = []
    dataset = {"id": "ds-1", "job_id": "ftjob-1", "status": "succeeded", "progress": {"a": 1}}
    pipeline.dataset_finished(stores.jobs, stores.job_events, dataset, sent.append)
    pipeline.dataset_finished(stores.jobs, stores.job_events, dataset, sent.append)
    assert sent == ["ftjob-1"]
    job = stores.jobs.get("ftjob-1")
    assert job["handed_off_to"] is None
    assert job["stages"]["ingest"]["status"] == "succeeded"
    assert job["stages"]["ingest"]["progress"] == {"a": 1}
    assert _messages(stores, "ingest")


def test_a_failed_build_fails_the_job_and_says_why(stores: Stores) -> None:
    _job(stores)
    error = {"code": "ingest_failed", "message": "no conversations", "param": None}
    dataset = {"id": "ds-1", "job_id": "ftjob-1", "status": "failed", "error": error}
    pipeline.dataset_finished(stores.jobs, stores.job_events, dataset, lambda _: None)
    job = stores.jobs.get("ftjob-1")
    assert job["status"] == "failed"
    assert job["error"]["message"] == "ingest failed: no conversations"
    assert job["stages"]["ingest"]["status"] == "failed"
    assert job["stages"]["train"]["status"] == "queued"


def test_only_the_holder_ends_a_job(stores: Stores) -> None:
    _job(stores)
    outcome = {"status": "succeeded", "message": "done"}
    events = stores.job_events
    assert not pipeline.end_job(stores.jobs, events, "ftjob-1", "ds-9", "deploy", outcome)
    assert stores.jobs.get("ftjob-1")["status"] == "queued"
    assert pipeline.end_job(stores.jobs, events, "ftjob-1", "ds-1", "ingest", outcome)
    assert stores.jobs.get("ftjob-1")["status"] == "succeeded"


def test_the_deploy_stage_records_a_deployment_naming_the_job(stores: Stores) -> None:
    _job(stores)
    holder, fields = pipeline.deploy_handoff("tiny-ft", "/models/tiny-ft")
    stores.jobs.update("ftjob-1", status="running", handed_off_to=holder, **fields)
    pipeline.create_deployment(stores.jobs, stores.deployments, stores.job_events, "ftjob-1")
    deployment = stores.deployments.get("tiny-ft")
    assert deployment["job_id"] == "ftjob-1" and deployment["path"] == "/models/tiny-ft"
    job = stores.jobs.get("ftjob-1")
    assert job["stage"] == "deploy" and job["stages"]["deploy"]["status"] == "running"
    pipeline.close_stage(stores.jobs, {**job, "status": "cancelled"}, "deploy")
    assert stores.jobs.get("ftjob-1")["stages"]["deploy"]["status"] == "cancelled"
