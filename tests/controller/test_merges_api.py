"""``/v1/merges`` ownership on a real controller: a merge touches only what it names, and published
models (the default one above all) are not replaced unless the deployment allows it. No merger
runs here: the merges stay queued."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.settings import DEFAULT_MODEL_NAME
from shared.stores import Stores


@pytest.fixture
def adapter(tmp_path: Path) -> str:
    folder = tmp_path / "my-lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return str(folder)


@pytest.fixture
def merge(tiny_model_dir: Path, adapter: str) -> Callable[..., dict]:
    def body(**fields: object) -> dict:
        return {"base_model": str(tiny_model_dir), "adapter": adapter, **fields}

    return body


def post(api: str, body: dict) -> httpx.Response:
    return httpx.post(f"{api}/v1/merges", json=body)


def finished_job(stores: Stores, job_id: str, **fields: object) -> None:
    record = {"id": job_id, "object": "fine_tuning.job", "status": "succeeded", "model": "m"}
    stores.jobs.create({**record, "fine_tuned_model": "theirs", **fields})


def test_a_client_cannot_link_a_merge_to_a_job(
    api: str, merge: Callable[..., dict], stores: Stores
) -> None:
    finished_job(stores, "ftjob-theirs")
    refused = post(api, merge(job_id="ftjob-theirs"))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "job_id" and "only a fine-tuning job" in error["message"]
    # Merging a finished job's adapter is fine; cancelling that merge leaves the job alone.
    finished_job(stores, "ftjob-lora", result_dir=merge()["adapter"], method="lora")
    queued = post(api, merge(adapter="ftjob-lora", name="from-job"))
    assert queued.status_code == 201, queued.text
    assert queued.json()["job_id"] is None
    httpx.post(f"{api}/v1/merges/{queued.json()['id']}/cancel").raise_for_status()
    assert stores.jobs.get("ftjob-lora")["status"] == "succeeded"
    assert stores.jobs.get("ftjob-theirs")["status"] == "succeeded"


def test_cancelling_a_merge_ends_only_the_job_that_handed_off_to_it(
    api: str, stores: Stores
) -> None:
    """A merge record naming a job that never handed its adapter to it (a forged or old record)
    cannot change that job."""
    stores.jobs.create({"id": "ftjob-busy", "status": "running", "merge_id": "merge-real"})
    stores.merges.create({"id": "merge-forged", "status": "queued", "job_id": "ftjob-busy"})
    httpx.post(f"{api}/v1/merges/merge-forged/cancel").raise_for_status()
    assert stores.merges.get("merge-forged")["status"] == "cancelled"
    assert stores.jobs.get("ftjob-busy")["status"] == "running"
    stores.merges.create({"id": "merge-real", "status": "queued", "job_id": "ftjob-busy"})
    httpx.post(f"{api}/v1/merges/merge-real/cancel").raise_for_status()
    assert stores.jobs.get("ftjob-busy")["status"] == "cancelled"


def test_published_models_are_not_replaced_by_default(
    api: str, merge: Callable[..., dict], folders: dict
) -> None:
    models = Path(folders["MODELS_DIR"])
    (models / "published").mkdir(parents=True)
    (models / DEFAULT_MODEL_NAME).mkdir()
    for fields, param, says in (
        ({"name": "published", "overwrite": True}, "overwrite", "MODELS_ALLOW_OVERWRITE"),
        ({"name": "published"}, "name", "already exists"),
        ({"name": DEFAULT_MODEL_NAME, "overwrite": True}, "name", "the default model"),
        ({"name": DEFAULT_MODEL_NAME}, "name", "the default model"),
        ({"name": "new-one", "overwrite": True}, "overwrite", "MODELS_ALLOW_OVERWRITE"),
    ):
        response = post(api, merge(**fields))
        assert response.status_code == 400, (fields, response.text)
        error = response.json()["error"]
        assert error["param"] == param and says in error["message"], (fields, error)


def test_a_deployment_may_allow_replacing_published_models_but_never_the_default(
    controller: Callable[..., str], merge: Callable[..., dict], folders: dict
) -> None:
    api = controller(env={**folders, "MODELS_ALLOW_OVERWRITE": "true"})
    models = Path(folders["MODELS_DIR"])
    (models / "published").mkdir(parents=True)
    replaced = post(api, merge(name="published", overwrite=True))
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["overwrite"] is True
    default = post(api, merge(name=DEFAULT_MODEL_NAME, overwrite=True))
    assert default.status_code == 400 and default.json()["error"]["param"] == "name"


def test_merge_inputs_are_folders_under_the_allowed_folders(
    api: str, merge: Callable[..., dict]
) -> None:
    for fields, param in (
        ({"base_model": "/etc"}, "base_model"),
        ({"base_model": "../" * 12 + "usr"}, "base_model"),
        ({"adapter": "/etc"}, "adapter"),
        ({"adapter": "/no/such/adapter"}, "adapter"),
    ):
        error = post(api, merge(**fields)).json()["error"]
        assert error["param"] == param and "under an allowed folder" in error["message"], fields
    queued = post(api, merge(name="ok")).json()
    assert Path(queued["base_model"]).is_absolute() and Path(queued["adapter"]).is_absolute()
