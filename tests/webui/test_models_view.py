"""The models page's tables, and the management client against a real controller and worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.webui.management_client import APIRefused, ManagementClient, NotAvailable
from services.webui.models import (
    WorkerProbe,
    deployment_rows,
    eval_table,
    probe_workers,
    worker_rows,
)
from tests.webui.stack import Stack


@pytest.fixture
def client(stack: Stack) -> Iterator[ManagementClient]:
    with ManagementClient(stack.controller, timeout=5) as c:
        yield c


def test_worker_rows_prefer_the_workers_own_answer() -> None:
    workers = [
        {"name": "http://b", "model_names": ["b"], "queue_length": 3, "last_heart_beat": 95.0},
        {"name": "http://a", "model_names": ["a", "a2"], "queue_length": 1, "last_heart_beat": 0},
        {"name": "http://c", "model_names": ["c"], "check_heart_beat": False},
    ]
    probes = {
        "http://a": WorkerProbe(True, queue_length=2, running=2),
        "http://b": WorkerProbe(False, error="http://b/health: refused"),
        "http://c": WorkerProbe(True, queue_length=0),
    }
    assert worker_rows(workers, probes, now=100.0) == [
        ["a, a2", "http://a", "healthy (no heartbeat yet)", 2, 2],
        ["b", "http://b", "unreachable: http://b/health: refused", 3, ""],
        ["c", "http://c", "healthy (registered without heartbeats)", 0, ""],
    ]


def test_eval_table_is_task_by_model() -> None:
    body = {
        "object": "evaluation.results",
        "models": {},
        "table": {
            "models": ["m1", "m2"],
            "rows": [
                {"task": "arc_challenge", "m1": 50.123, "m2": None},
                {"task": "leaderboard_average", "m1": 48.0, "m2": 47.5},
            ],
        },
    }
    assert eval_table(body) == (
        ["task", "m1", "m2"],
        [["arc_challenge", 50.12, ""], ["leaderboard_average", 48.0, 47.5]],
    )
    assert eval_table({"table": {"models": [], "rows": []}}) == ([], [])


def test_deployment_rows() -> None:
    record = {"model": "m", "status": "failed", "path": "/p", "error": "no config.json"}
    assert deployment_rows([record]) == [["m", "failed", "", "/p", "no config.json"]]


def test_workers_are_probed_through_their_public_apis(
    stack: Stack, client: ManagementClient, dead_address: str
) -> None:
    stack.register(dead_address, "models-view-dead")
    workers = client.list_workers()
    probes = probe_workers(client, workers)
    assert probes[stack.worker] == WorkerProbe(True, queue_length=0, running=0)
    assert not probes[dead_address].healthy
    assert probes[dead_address].error.startswith(f"{dead_address}/health:")
    rows = {row[1]: row for row in worker_rows(workers, probes)}
    assert rows[stack.worker][0] == stack.model
    assert rows[stack.worker][2].startswith("healthy (heartbeat")


def test_api_refusals_carry_the_apis_own_message(
    client: ManagementClient, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(APIRefused, match=r"^model: '/no/such/model' is not a model folder") as bad:
        client.create_job({"model": "/no/such/model", "training_file": str(tmp_path)})
    assert bad.value.status_code == 400 and bad.value.param == "model"
    with pytest.raises(APIRefused, match=r"sources\[0\]: '/no/such/file.jsonl' is neither"):
        client.create_dataset(["/no/such/file.jsonl"])
    with pytest.raises(APIRefused, match="No fine-tuning job 'ftjob-nope'"):
        client.get_job("ftjob-nope")

    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"conversations": []}) + "\n")
    too_long = {"model": str(tiny_model_dir), "training_file": str(data)}
    with pytest.raises(APIRefused, match=r"^hyperparameters\.max_length: 2048 is beyond"):
        client.create_job(too_long)
    job = client.create_job({**too_long, "hyperparameters": {"max_length": 128}})
    assert client.get_job(job["id"])["status"] == "queued"
    assert job["id"] in [j["id"] for j in client.list_jobs()]
    [event] = client.job_events(job["id"])
    assert event["message"] == f"Created fine-tuning job: {job['id']}"
    cancelled = client.cancel_job(job["id"])
    assert cancelled["cancel_requested"] is True


def test_a_route_this_deployment_lacks_is_not_available(stack: Stack) -> None:
    # A model worker answers /health but has none of the controller's /v1 management routes.
    with ManagementClient(stack.worker) as client, pytest.raises(NotAvailable):
        client.eval_results()
