"""``/v1/models/{name}/deploy`` on a real controller: a deployment names a folder under the allowed
folders only, whichever way it was found (no model pool runs here)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx

from shared.stores import Stores


def deploy(api: str, name: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(f"{api}/v1/models/{name}/deploy", json=body)


def test_a_name_cannot_point_at_a_folder_outside_the_allowed_folders(
    api: str, tmp_path: Path
) -> None:
    answers = []
    for path in ("/etc", "/no/such/folder", str(tmp_path / ("../" * 12) / "usr")):
        response = deploy(api, "mine", {"path": path})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "path"
        answers.append(error["message"].replace(repr(path), "<path>"))
    assert len(set(answers)) == 1 and "under an allowed folder" in answers[0]
    assert httpx.get(f"{api}/v1/deployments").json()["data"] == []


def test_a_symlink_in_models_dir_out_of_the_roots_is_not_deployed(api: str, folders: dict) -> None:
    models = Path(folders["MODELS_DIR"])
    models.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as outside:  # not under pytest's folder (IMPORT_DIR)
        (Path(outside) / "config.json").write_text("{}")
        (models / "sneaky").symlink_to(outside)
        response = deploy(api, "sneaky")
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "name" and "under an allowed folder" in error["message"]


def test_a_job_result_outside_the_roots_is_not_deployed(api: str, stores: Stores) -> None:
    stores.jobs.create(
        {"id": "ftjob-x", "status": "succeeded", "fine_tuned_model": "odd", "result_dir": "/etc"}
    )
    response = deploy(api, "odd")
    assert response.status_code == 400 and "under an allowed folder" in response.text


def test_folders_under_the_roots_are_deployed(
    api: str, folders: dict, tiny_model_dir: Path
) -> None:
    published = Path(folders["MODELS_DIR"]) / "tiny"
    shutil.copytree(tiny_model_dir, published)
    by_name = deploy(api, "tiny")
    assert by_name.status_code == 202, by_name.text
    assert by_name.json()["path"] == str(published.resolve())
    by_path = deploy(api, "other", {"path": str(tiny_model_dir)})
    assert by_path.status_code == 202, by_path.text
