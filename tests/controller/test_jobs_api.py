"""``/v1/fine_tuning/jobs`` on a real controller: validation, records, events, queueing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.stores import Stores
from shared.trainers import announce, live_trainers
from tests.support import ServiceProcess, wait_until

Queued = Callable[[str], list[dict]]


@pytest.fixture
def body(tiny_model_dir: Path, conv_file: Path) -> Callable[..., dict]:
    """A job body that passes every check (a short context for the tiny model), and changes."""

    def build(**fields: object) -> dict:
        return {
            "model": str(tiny_model_dir),
            "training_file": str(conv_file),
            "hyperparameters": {"max_length": 128},
            **fields,
        }

    return build


def create(api: str, body: dict) -> dict:
    created = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body)
    assert created.status_code == 201, created.text
    return created.json()


def test_create_get_list_events_cancel(
    api: str, body: Callable[..., dict], queued: Queued, stores: Stores, tmp_path: Path
) -> None:
    hyperparameters = {"n_epochs": 1, "max_length": 128}
    job = create(api, body(method="qlora", hyperparameters=hyperparameters, suffix="demo"))
    assert job["id"].startswith("ftjob-")
    assert job["object"] == "fine_tuning.job"
    assert job["status"] == "queued"
    assert job["hyperparameters"]["lora_r"] == 64  # QLoRA defaults of the original's recipe
    assert job["hyperparameters"]["max_grad_norm"] == 0.3
    assert job["output_dir"] == str(tmp_path / "jobs" / job["id"])
    tasks = queued("train")
    assert [t["headers"]["task"] for t in tasks] == ["train.run_job"]

    assert httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}").json()["id"] == job["id"]
    listing = httpx.get(f"{api}/v1/fine_tuning/jobs").json()
    assert [j["id"] for j in listing["data"]] == [job["id"]]
    events = httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/events").json()
    assert events["data"][0]["message"] == f"Created fine-tuning job: {job['id']}"
    assert httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"] == []

    # Claimed by a trainer: it sees the flag at its next step and ends the job itself.
    stores.jobs.update(job["id"], status="running", lease_owner="trainer@elsewhere")
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert (cancelled["status"], cancelled["cancel_requested"]) == ("running", True)
    assert cancelled["finished_at"] is None


def test_a_queued_job_no_trainer_takes_is_cancelled_at_once(
    api: str, body: Callable[..., dict], queued: Queued
) -> None:
    job = create(api, body(gpus=64))  # no trainer here (nor anywhere) has 64 GPUs
    assert len(queued("train-gpu-64")) == 1
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert (cancelled["status"], cancelled["cancel_requested"]) == ("cancelled", True)
    assert cancelled["finished_at"] >= job["created_at"]
    assert httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}").json() == cancelled
    events = httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]
    assert events[0]["message"] == "Job cancelled before it started."
    # Finished: cancelling again changes nothing.
    again = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel")
    assert (again.status_code, again.json()) == (200, cancelled)


def test_a_queued_job_a_trainer_has_claimed_is_left_to_it(
    api: str, body: Callable[..., dict], stores: Stores
) -> None:
    job = create(api, body())
    stores.jobs.update(job["id"], lease_owner="trainer@elsewhere")  # claimed, not yet running
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert (cancelled["status"], cancelled["cancel_requested"]) == ("queued", True)


def test_jobs_needing_gpus_go_to_a_gpu_queue(
    api: str, body: Callable[..., dict], queued: Queued
) -> None:
    create(api, body(gpus=4))
    assert len(queued("train-gpu-4")) == 1


def test_a_job_needing_more_gpus_than_every_live_trainer_offers_is_refused(
    api: str, body: Callable[..., dict], queued: Queued, stores: Stores
) -> None:
    announce(stores.client, stores.keys, "trainer-a", 2)
    announce(stores.client, stores.keys, "trainer-b", 1)
    refused = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(gpus=3))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["param"], error["code"]) == ("gpus", "invalid_fine_tuning_job")
    assert error["message"].startswith("gpus: 3 GPUs is more than any running trainer offers")
    assert queued("train-gpu-3") == []
    create(api, body(gpus=2))
    assert len(queued("train-gpu-2")) == 1
    # Trainers that stopped renewing their announcement no longer count.
    announce(stores.client, stores.keys, "trainer-a", 2, ttl=0.1)
    assert wait_until(lambda: live_trainers(stores.client, stores.keys) == {"trainer-b": 1}, 5)
    assert httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(gpus=2)).status_code == 400


def test_a_running_trainer_announces_its_gpus_until_it_stops(
    controller: Callable[..., str],
    service: Callable[..., ServiceProcess],
    folders: dict[str, str],
    body: Callable[..., dict],
    stores: Stores,
    redis_url: str,
    redis_prefix: str,
) -> None:
    env = {**folders, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix}
    api = controller(env=env)
    trainer = service("services.trainer", "--gpus", "2", env=env)
    assert wait_until(lambda: list(live_trainers(stores.client, stores.keys).values()) == [2], 60)
    refused = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(gpus=3))
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "gpus")
    trainer.stop()  # a clean stop withdraws at once (a killed one lapses within 15 s)
    assert live_trainers(stores.client, stores.keys) == {}
    create(api, body(gpus=3))  # no trainer live: queued, as it may come


def test_a_preset_fills_in_its_recipe_and_the_body_wins(
    api: str, body: Callable[..., dict], queued: Queued
) -> None:
    job = create(api, body(preset="camel-7b-full-4gpu"))
    assert (job["method"], job["request"]["gpus"], job["request"]["preset"]) == (
        "full",
        4,
        "camel-7b-full-4gpu",
    )
    assert job["hyperparameters"]["max_length"] == 128
    assert job["hyperparameters"]["gradient_checkpointing"] is True
    assert len(queued("train-gpu-4")) == 1
    unknown = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(preset="nope"))
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "preset"
    assert "camel-qlora-1gpu" in unknown.json()["error"]["message"]


def test_dataset_ids_must_be_built(api: str, body: Callable[..., dict], stores: Stores) -> None:
    stores.datasets.create({"id": "ds-running", "status": "running", "path": "/nowhere"})
    response = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(training_file="ds-running"))
    assert response.status_code == 400
    assert "not ready" in response.json()["error"]["message"]


def test_every_bad_field_is_named(api: str) -> None:
    bad = {
        "model": "/no/such/model",
        "training_file": "ds-unknown",
        "hyperparameters": {"learning_rate": -1, "lora_r": 0},
    }
    error = httpx.post(f"{api}/v1/fine_tuning/jobs", json=bad).json()["error"]
    assert "hyperparameters.learning_rate" in error["message"]
    assert "hyperparameters.lora_r" in error["message"]
    bad = {"model": "/no/such/model", "training_file": "ds-unknown"}
    error = httpx.post(f"{api}/v1/fine_tuning/jobs", json=bad).json()["error"]
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
        ({"hyperparameters": {"max_length": 128, "n_epochs": "x"}}, "hyperparameters.n_epochs"),
        ({"method": "full", "hyperparameters": {"lora_r": 8}}, "hyperparameters.lora_r"),
        ({"method": "dpo"}, "method"),
        ({"training_file": "/no/file.jsonl"}, "training_file"),
        ({"model": "not-a-model"}, "model"),
        ({"validation_split": 0.9}, "validation_split"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_jobs_are_400s(api: str, body: Callable[..., dict], changes: dict, param: str) -> None:
    response = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(**changes))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_fine_tuning_job")
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{param}: ") or f"; {param}: " in error["message"]


def test_unknown_job_is_404(api: str) -> None:
    response = httpx.get(f"{api}/v1/fine_tuning/jobs/ftjob-nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("fine_tuning_job_not_found", "fine_tuning_job_id")
    assert httpx.post(f"{api}/v1/fine_tuning/jobs/ftjob-nope/cancel").status_code == 404
    assert httpx.get(f"{api}/v1/fine_tuning/jobs/ftjob-nope/events").status_code == 404


def test_cancelling_a_job_that_is_merging_cancels_its_merge(
    api: str, body: Callable[..., dict], stores: Stores
) -> None:
    job = create(api, body(merge=True))
    stores.merges.create({"id": "merge-1", "status": "running", "job_id": job["id"]})
    stores.jobs.update(job["id"], status="running", merge_id="merge-1")
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert cancelled["cancel_requested"] is True
    assert stores.merges.get("merge-1")["cancel_requested"] is True


def test_a_job_whose_merge_never_started_is_cancelled_with_it(
    api: str, body: Callable[..., dict], stores: Stores
) -> None:
    job = create(api, body(merge=True))
    stores.merges.create({"id": "merge-2", "status": "queued", "job_id": job["id"]})
    stores.jobs.update(job["id"], status="running", merge_id="merge-2")  # handed to the merger
    cancelled = httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert stores.merges.get("merge-2")["status"] == "cancelled"
    events = httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]
    assert events[0]["message"].startswith("Merge cancelled")


def test_files_and_models_outside_the_allowed_folders_are_refused(
    api: str, body: Callable[..., dict], conv_file: Path
) -> None:
    """A training file climbing out with ../ to /etc/passwd, an existing file outside the roots
    and a missing one: the same answer, which tells nothing of what exists there."""
    climbing = str(conv_file.parent / ("../" * 12) / "etc" / "passwd")
    answers = []
    for name in (climbing, "/etc/passwd", "/etc/no-such-file"):
        for field in ("training_file", "validation_file"):
            response = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(**{field: name}))
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == field
            answers.append(error["message"].replace(repr(name), "<file>").replace(field, "<f>"))
    assert len(set(answers)) == 1, answers
    assert answers[0].endswith(
        "is not a file under an allowed folder (MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR)"
    )
    for model in ("/etc", "/usr/lib/no-such-model", "../" * 12 + "etc"):
        error = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body(model=model)).json()["error"]
        assert error["param"] == "model" and "under an allowed folder" in error["message"]


def test_models_are_folders_names_under_models_dir_or_hub_ids(
    api: str, body: Callable[..., dict], folders: dict, tiny_model_dir: Path
) -> None:
    published = Path(folders["MODELS_DIR"]) / "tiny"
    shutil.copytree(tiny_model_dir, published)
    assert create(api, body(model="tiny"))["model"] == str(published.resolve())
    hub = create(api, body(model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert hub["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_lazy_tokenization_and_the_original_qlora_caps_are_job_fields(
    api: str, body: Callable[..., dict]
) -> None:
    hyperparameters = {
        "max_length": 128, "lazy_preprocess": True, "max_samples": 1000,
        "max_eval_samples": 10, "max_memory_mb": 80000,
    }  # fmt: skip
    job = create(api, body(method="qlora", hyperparameters=hyperparameters))
    assert {k: job["hyperparameters"][k] for k in hyperparameters} == hyperparameters
    refused = httpx.post(
        f"{api}/v1/fine_tuning/jobs", json=body(hyperparameters={"lazy_preprocess": "maybe"})
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "hyperparameters.lazy_preprocess"
