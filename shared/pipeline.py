"""One call from raw data to a chat model: a fine-tuning job that also ingests and deploys.

``POST /v1/fine_tuning/jobs`` with ``sources`` (instead of ``training_file``) and/or
``deploy: true`` records the job with ``stages``: an entry per stage it runs, in the order
``ingest, train, merge, deploy``, each with its ``status``, the ``id`` of the record doing the work
and its ``progress``; ``stage`` names the current one and every job event says its ``stage``.
Each service hands the job on the way the trainer already hands an adapter to the merger (the
record names who holds it in ``handed_off_to``; only that holder moves it on):

- controller: records the dataset build (with ``job_id``) and the job, held by the dataset;
- ingestor (the build's terminal hook): succeeded -> the job is released to the trainer and its
  train task sent; failed or cancelled -> the job ends so;
- trainer: as before; without a merge but with ``deploy`` it hands the model to the deploy stage;
- merger (its terminal hook): with ``deploy`` the merged model goes to the deploy stage instead
  of the job succeeding;
- deploy: a deployment record naming the job; the model pool starts the worker and, once it is
  up, asks the controller for one chat completion: the job succeeds only when that answers.

Cancel stops the current stage: the dataset build, the training, the merge, or the deployment.
"""

from __future__ import annotations

import time
from typing import Any

from shared.deployments import new_deployment_record
from shared.job_records import EventLog, RecordStore
from shared.training import job_event

STAGE_ORDER = ("ingest", "train", "merge", "deploy")
TERMINAL = ("succeeded", "failed", "cancelled")
DEPLOY_PREFIX = "deployment:"
# What the pool asks the deployed model before the job may succeed.
CHECK_PROMPT = "Hello! In one short sentence, what can you do?"


def new_stages(ingest_id: str | None, merge: bool, deploy: bool) -> dict[str, dict[str, Any]]:
    """The ``stages`` of a job: ingest only with sources, merge only for adapters merged."""
    names = [n for n in STAGE_ORDER if _runs(n, ingest_id, merge, deploy)]
    stages = {name: {"status": "queued", "id": None, "progress": None} for name in names}
    if ingest_id is not None:
        stages["ingest"]["id"] = ingest_id
    return stages


def _runs(name: str, ingest_id: str | None, merge: bool, deploy: bool) -> bool:
    return {"ingest": ingest_id is not None, "merge": merge, "deploy": deploy}.get(name, True)


def has_stage(record: dict[str, Any], name: str) -> bool:
    return name in (record.get("stages") or {})


def stage_event(events: EventLog, job_id: str, stage: str, text: str, level: str = "info") -> None:
    events.append(job_id, {**job_event(text, level), "stage": stage})


def set_stage(jobs: RecordStore, job_id: str, name: str, **fields: Any) -> dict[str, Any] | None:
    """Merge ``fields`` into ``stages[name]`` (a running stage becomes the current one)."""

    def change(record: dict[str, Any]) -> dict[str, Any] | None:
        stages = dict(record.get("stages") or {})
        if name not in stages:
            return None
        entry = {**stages[name], **fields}
        now = int(time.time())
        if fields.get("status") == "running":
            entry.setdefault("started_at", now)
        if fields.get("status") in TERMINAL:
            entry["finished_at"] = now
        stages[name] = entry
        current = name if fields.get("status") == "running" else record.get("stage")
        return {"stages": stages, "stage": current}

    return jobs.change(job_id, change)


def close_stage(jobs: RecordStore, record: dict[str, Any], name: str) -> None:
    """A runner's terminal hook: the stage ends as its job did, unless it already ended."""
    stage = (record.get("stages") or {}).get(name)
    if stage is not None and stage.get("status") not in TERMINAL:
        set_stage(jobs, record["id"], name, status=record["status"])


def held_by(jobs: RecordStore, job_id: str, holder: str, **fields: Any) -> dict[str, Any] | None:
    """Update the job only while ``holder`` holds it and it has not finished."""

    def owned(record: dict[str, Any]) -> bool:
        return record.get("handed_off_to") == holder and record.get("status") not in TERMINAL

    return jobs.update_if(job_id, owned, **fields)


def end_job(
    jobs: RecordStore, events: EventLog, job_id: str, holder: str, stage: str, outcome: dict
) -> bool:
    """Finish a job its ``holder`` still holds: ``outcome`` has ``status`` and maybe ``error``,
    ``message`` and record fields. False when someone else holds it or it had finished."""
    status = outcome["status"]
    fields = {k: v for k, v in outcome.items() if k not in ("message", "status")}
    done = held_by(jobs, job_id, holder, status=status, finished_at=int(time.time()), **fields)
    if done is None:
        return False
    set_stage(jobs, job_id, stage, status=status)
    level = "error" if status == "failed" else "info"
    if outcome.get("message"):
        stage_event(events, job_id, stage, outcome["message"], level)
    return True


def release_to_trainer(jobs: RecordStore, events: EventLog, dataset: dict[str, Any]) -> bool:
    """The dataset a job waited for is built: the trainer may claim the job now. True when the
    caller should send the train task."""
    job_id, holder = dataset["job_id"], dataset["id"]
    if held_by(jobs, job_id, holder, handed_off_to=None) is None:
        return False
    examples = (dataset.get("manifest") or {}).get("counts", {})
    set_stage(jobs, job_id, "ingest", status="succeeded", progress=dataset.get("progress"))
    set_stage(jobs, job_id, "train", status="queued")
    stage_event(events, job_id, "ingest", f"Dataset {holder} built {examples or ''}".strip())
    return True


def dataset_finished(
    jobs: RecordStore, events: EventLog, dataset: dict[str, Any], send_train: Any
) -> None:
    """The ingestor's terminal hook for a build that feeds a job."""
    job_id = dataset.get("job_id")
    if not job_id:
        return
    if dataset["status"] == "succeeded":
        if release_to_trainer(jobs, events, dataset):
            send_train(job_id)
        return
    error = dataset.get("error") or {}
    outcome: dict[str, Any] = {"status": dataset["status"]}
    if dataset["status"] == "failed":
        message = f"ingest failed: {error.get('message')}"
        outcome |= {"message": message, "error": {**error, "message": message}}
    else:
        outcome["message"] = "Dataset build cancelled; the job stops."
    end_job(jobs, events, job_id, dataset["id"], "ingest", outcome)


def deploy_handoff(name: str, path: str) -> tuple[str, dict[str, Any]]:
    """Who holds a job handed to the deploy stage, and the job's fields naming the model;
    ``create_deployment`` then starts the stage, once the job names it."""
    fields = {"fine_tuned_model": name, "deploy_path": path}
    return f"{DEPLOY_PREFIX}{name}", fields


def create_deployment(
    jobs: RecordStore, deployments: RecordStore, events: EventLog, job_id: str
) -> None:
    """Start the deploy stage of a job handed to it (the deployment names the job)."""
    job = jobs.get(job_id) or {}
    name, path = job.get("fine_tuned_model"), job.get("deploy_path")
    if not name or not path:
        return
    existing = deployments.get(name)
    if existing is not None:
        deployments.delete(name)  # a model of the same name from before: serve this one
    record = new_deployment_record(name, path) | {"job_id": job_id}
    deployments.create(record)
    set_stage(jobs, job_id, "deploy", status="running", id=name, progress={"status": "pending"})
    stage_event(events, job_id, "deploy", f"Deploying {name} from {path}.")


def deployment_progress(jobs: RecordStore, deployment: dict[str, Any]) -> None:
    """Mirror the deployment's state onto the job's deploy stage."""
    job_id = deployment.get("job_id")
    if job_id:
        progress = {"status": deployment["status"], "worker": deployment.get("worker_address")}
        set_stage(jobs, job_id, "deploy", progress=progress)
