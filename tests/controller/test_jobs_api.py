"""``/v1/fine_tuning/jobs`` on a real controller: validation, records, events, queueing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from shared.job_records import RecordStore
from shared.redis_keys import RedisKeys


@pytest.fixture
def api(controller: Callable[..., str], tmp_path: Path) -> str:
    return controller(
        env={"JOBS_DIR": str(tmp_path / "jobs"), "DATASETS_DIR": str(tmp_path / "datasets")}
    )


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    record = {
        "id": "a",
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
    }
    path.write_text(json.dumps(record) + "\n")
    return path


def queued(redis_url: str, prefix: str, queue: str) -> list[dict]:
    raw = redis.Redis.from_url(redis_url).lrange(f"{prefix}{queue}", 0, -1)
    return [json.loads(item) for item in raw]


def test_create_get_list_events_cancel(
    api: str,
    tiny_model_dir: Path,
    data_file: Path,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    body = {
        "model": str(tiny_model_dir),
        "training_file": str(data_file),
        "method": "qlora",
        "hyperparameters": {"n_epochs": 1, "max_length": 128},
        "suffix": "demo",
    }
    created = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["id"].startswith("ftjob-")
    assert job["object"] == "fine_tuning.job"
    assert job["status"] == "queued"
    assert job["hyperparameters"]["lora_r"] == 64  # QLoRA defaults of the original's recipe
    assert job["hyperparameters"]["max_grad_norm"] == 0.3
    assert job["output_dir"] == str(tmp_path / "jobs" / job["id"])
    tasks = queued(redis_url, redis_prefix, "train")
    assert [t["headers"]["task"] for t in tasks] == ["train.run_job"]

    assert httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}").json()["id"] == job["id"]
    listing = httpx.get(f"{api}/v1/fine_tuning/jobs").json()
    assert [j["id"] for j in listing["data"]] == [job["id"]]
    events = httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/events").json()
    assert events["data"][0]["message"] == f"Created fine-tuning job: {job['id']}"
    assert httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"] == []
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert cancelled["cancel_requested"] is True


def test_jobs_needing_gpus_go_to_a_gpu_queue(
    api: str, tiny_model_dir: Path, data_file: Path, redis_url: str, redis_prefix: str
) -> None:
    body = {
        "model": str(tiny_model_dir),
        "training_file": str(data_file),
        "gpus": 4,
        "hyperparameters": {"max_length": 128},
    }
    assert httpx.post(f"{api}/v1/fine_tuning/jobs", json=body).status_code == 201
    assert len(queued(redis_url, redis_prefix, "train-gpu-4")) == 1


def test_a_preset_fills_in_its_recipe_and_the_body_wins(
    api: str, tiny_model_dir: Path, data_file: Path, redis_url: str, redis_prefix: str
) -> None:
    body = {
        "model": str(tiny_model_dir),
        "training_file": str(data_file),
        "preset": "camel-7b-full-4gpu",
        "hyperparameters": {"max_length": 128},
    }
    created = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body)
    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["method"], job["request"]["gpus"], job["request"]["preset"]) == (
        "full",
        4,
        "camel-7b-full-4gpu",
    )
    assert job["hyperparameters"]["max_length"] == 128
    assert job["hyperparameters"]["gradient_checkpointing"] is True
    assert len(queued(redis_url, redis_prefix, "train-gpu-4")) == 1
    unknown = httpx.post(f"{api}/v1/fine_tuning/jobs", json={**body, "preset": "nope"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "preset"
    assert "camel-qlora-1gpu" in unknown.json()["error"]["message"]


def test_dataset_ids_must_be_built(
    api: str, tiny_model_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    store = RecordStore(
        redis.Redis.from_url(redis_url, decode_responses=True), RedisKeys(redis_prefix), "dataset"
    )
    store.create({"id": "ds-running", "status": "running", "path": "/nowhere"})
    response = httpx.post(
        f"{api}/v1/fine_tuning/jobs",
        json={"model": str(tiny_model_dir), "training_file": "ds-running"},
    )
    assert response.status_code == 400
    assert "not ready" in response.json()["error"]["message"]


def test_every_bad_field_is_named(api: str, tiny_model_dir: Path) -> None:
    body = {
        "model": "/no/such/model",
        "training_file": "ds-unknown",
        "hyperparameters": {"learning_rate": -1, "lora_r": 0},
    }
    error = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body).json()["error"]
    assert "hyperparameters.learning_rate" in error["message"]
    assert "hyperparameters.lora_r" in error["message"]
    body = {"model": "/no/such/model", "training_file": "ds-unknown"}
    error = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body).json()["error"]
    assert error["param"] == "model"
    assert "training_file: unknown dataset 'ds-unknown'" in error["message"]


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"hyperparameters": {"max_length": 100000}}, "hyperparameters.max_length"),
        (
            {"hyperparameters": {"max_length": 128, "learning_rate": 0}},
            "hyperparameters.learning_rate",
        ),
        ({"hyperparameters": {"max_length": 128, "lora_r": -2}}, "hyperparameters.lora_r"),
        ({"method": "dpo"}, "method"),
        ({"training_file": "/no/file.jsonl"}, "training_file"),
        ({"model": "not-a-model"}, "model"),
        ({"validation_split": 0.9}, "validation_split"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_jobs_are_400s(
    api: str, tiny_model_dir: Path, data_file: Path, changes: dict, param: str
) -> None:
    body = {
        "model": str(tiny_model_dir),
        "training_file": str(data_file),
        "hyperparameters": {"max_length": 128},
        **changes,
    }
    response = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_unknown_job_is_404(api: str) -> None:
    response = httpx.get(f"{api}/v1/fine_tuning/jobs/ftjob-nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "fine_tuning_job_not_found"
    assert httpx.post(f"{api}/v1/fine_tuning/jobs/ftjob-nope/cancel").status_code == 404


def test_cancelling_a_job_that_is_merging_cancels_its_merge(
    api: str, tiny_model_dir: Path, data_file: Path, redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    jobs = RecordStore(client, RedisKeys(redis_prefix), "fine_tuning_job")
    merges = RecordStore(client, RedisKeys(redis_prefix), "merge")
    body = {
        "model": str(tiny_model_dir),
        "training_file": str(data_file),
        "merge": True,
        "hyperparameters": {"max_length": 128},
    }
    created = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body)
    assert created.status_code == 201, created.text
    job = created.json()
    merges.create({"id": "merge-1", "status": "running", "job_id": job["id"]})
    jobs.update(job["id"], status="running", merge_id="merge-1")
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert cancelled["cancel_requested"] is True
    assert merges.get("merge-1")["cancel_requested"] is True
