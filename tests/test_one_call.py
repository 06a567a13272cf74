"""One call from raw data to a chat model: ``POST /v1/fine_tuning/jobs`` with ``sources`` and
``deploy: true`` ingests, trains, merges and deploys, through real services (controller,
ingestor, trainer, merger, model pool and its worker), and succeeds only once the deployed model
answers a chat. Bad bodies name their field; cancel stops the current stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Stack, wait_record, write_conversations

STAGES = ["ingest", "train", "merge", "deploy"]
HYPERPARAMETERS = {"max_steps": 4, "batch_size": 2, "max_length": 128, "save_steps": 2}


def _body(model: Path, **fields: Any) -> dict[str, Any]:
    return {
        "model": str(model),
        "method": "lora",
        "validation_split": 0.0,
        "hyperparameters": HYPERPARAMETERS,
        **fields,
    }


def _events(api: str, job_id: str) -> list[dict[str, Any]]:
    page = httpx.get(f"{api}/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100})
    return list(reversed(page.json()["data"]))


@pytest.mark.slow
def test_raw_data_becomes_a_deployed_model_that_answers_in_one_call(
    start_stack: Callable[..., Stack], tiny_model_dir: Path, tmp_path: Path
) -> None:
    stack = start_stack()
    api = stack.url
    for name in ("ingestor", "trainer", "merger"):
        stack.start(name)
    stack.start_pool(worker_ports=4)
    (tmp_path / "datasets").mkdir(exist_ok=True)
    raw = write_conversations(tmp_path / "datasets" / "raw.jsonl", count=24)

    body = _body(tiny_model_dir, sources=[str(raw)], merge=True, deploy=True, suffix="oneshot")
    created = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body, timeout=30)
    assert created.status_code == 201, created.text
    job = created.json()
    assert list(job["stages"]) == STAGES
    assert job["stage"] == "ingest" and job["training_file"].startswith("ds-")

    done = wait_record(f"{api}/v1/fine_tuning/jobs/{job['id']}", timeout=900)
    assert done["status"] == "succeeded", (done, _events(api, job["id"]))
    stages = done["stages"]
    assert [stages[name]["status"] for name in STAGES] == ["succeeded"] * 4
    assert stages["ingest"]["id"] == job["training_file"]
    assert stages["train"]["progress"]["step"] == HYPERPARAMETERS["max_steps"]
    assert stages["merge"]["id"] == done["merge_id"]
    assert stages["deploy"]["progress"]["status"] == "answered"
    name = done["fine_tuned_model"]
    assert stages["deploy"]["id"] == name

    by_stage: dict[str, list[str]] = {}
    for event in _events(api, job["id"]):
        by_stage.setdefault(event.get("stage") or "", []).append(event["message"])
    assert set(STAGES) <= set(by_stage)
    assert any("answered a chat" in message for message in by_stage["deploy"])

    deployment = httpx.get(f"{api}/v1/models/{name}/deploy").json()
    assert deployment["status"] == "deployed" and deployment["job_id"] == job["id"]
    dataset = httpx.get(f"{api}/v1/datasets/{job['training_file']}").json()
    assert dataset["status"] == "succeeded" and dataset["job_id"] == job["id"]
    reply = httpx.post(
        f"{api}/v1/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text


def test_bad_bodies_name_their_field(
    start_stack: Callable[..., Stack], tiny_model_dir: Path, tmp_path: Path
) -> None:
    api = start_stack().url
    (tmp_path / "datasets").mkdir(exist_ok=True)
    raw = write_conversations(tmp_path / "datasets" / "raw.jsonl")
    cases = [
        (_body(tiny_model_dir, sources=[str(raw)], training_file=str(raw)), "sources"),
        (_body(tiny_model_dir), "training_file"),
        (_body(tiny_model_dir, sources=[str(raw)], deploy=True), "merge"),
        (_body(tiny_model_dir, sources=[str(tmp_path / "datasets" / "nope.jsonl")]), "sources[0]"),
        (_body(tiny_model_dir, sources=[]), "sources"),
    ]
    for body, field in cases:
        answer = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body, timeout=30)
        assert answer.status_code == 400, (field, answer.text)
        assert answer.json()["error"]["param"] == field, answer.text
    assert httpx.get(f"{api}/v1/fine_tuning/jobs").json()["data"] == []
    assert httpx.get(f"{api}/v1/datasets").json()["data"] == []


def test_cancel_during_ingest_stops_the_build_and_the_job(
    start_stack: Callable[..., Stack], tiny_model_dir: Path, tmp_path: Path
) -> None:
    """No ingestor runs: the job waits in its ingest stage, and cancel ends both records."""
    api = start_stack().url
    (tmp_path / "datasets").mkdir(exist_ok=True)
    raw = write_conversations(tmp_path / "datasets" / "raw.jsonl")
    body = _body(tiny_model_dir, sources=[str(raw)], merge=True, deploy=True)
    job = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body, timeout=30).json()
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel", timeout=30).json()
    assert cancelled["status"] == "cancelled"
    record = httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}").json()
    assert record["stages"]["ingest"]["status"] == "cancelled"
    assert record["stages"]["train"]["status"] == "queued"
    dataset = httpx.get(f"{api}/v1/datasets/{job['training_file']}").json()
    assert dataset["status"] == "cancelled"
