"""Deploy and undeploy models at run time: ``/v1/models/{name}/deploy`` and ``/v1/deployments``.

The controller only records the wish (``shared/deployments.py``); a model pool loads the model
in a new model worker that registers itself, so the model shows up in ``/list_models``,
``/v1/models`` and the web chat without restarting anything.

A name resolves to a folder in this order: the request's ``path``; ``MODELS_DIR/<name>`` (where
merges publish); the result of the fine-tuning job whose ``fine_tuned_model`` is that name. The
folder must lie under the allowed folders (MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR, with
symlinks and ``..`` resolved): a name never points at a path elsewhere on the server.
Routes are plain ``def`` so Redis calls run in FastAPI's thread pool.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from services.controller.field_errors import InvalidFields
from services.controller.openai_errors import OpenAIError
from services.controller.openai_routes import openai_route
from services.controller.records import Backend
from services.controller.records_api import backend_of
from shared.deployments import (
    FAILED,
    MODEL_NAME_PATTERN,
    PENDING,
    UNDEPLOYING,
    new_deployment_record,
)
from shared.job_records import RecordStore
from shared.paths import AllowedRoots, RefusedReference

log = logging.getLogger(__name__)

router = APIRouter(tags=["deployments"], route_class=openai_route("invalid_deployment"))


class DeployRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/deploy`` (optional: the model is found by its name)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    conv_template: str | None = None


def _bad(param: str, message: str) -> InvalidFields:
    return InvalidFields([(param, message)])


def _not_found(name: str) -> OpenAIError:
    return OpenAIError(
        404, f"No deployment of model {name!r}.", param="name", code="deployment_not_found"
    )


def _check_name(name: str) -> None:
    if not MODEL_NAME_PATTERN.match(name):
        raise _bad(
            "name",
            f"{name!r} is not a valid model name (letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128 characters)",
        )


def _servable(folder: Path, param: str) -> str:
    """The folder as a string if a model worker can load it; a clear 400 otherwise."""
    if (folder / "config.json").is_file():
        return str(folder)
    if (folder / "adapter_config.json").is_file():
        raise _bad(
            param,
            f"{folder} is a LoRA adapter, not a model: merge it into its base first "
            "(POST /v1/merges, or a fine-tuning job with merge: true)",
        )
    raise _bad(param, f"{folder} is not a model folder (no config.json)")


def _job_result(jobs: RecordStore, name: str) -> str | None:
    records, _ = jobs.list(limit=10_000)
    for job in records:
        if job.get("fine_tuned_model") == name and job.get("status") == "succeeded":
            folder = job.get("merged_model_dir") or job.get("result_dir")
            if folder:
                return str(folder)
    return None


def _allowed_folder(roots: AllowedRoots, folder: str, param: str) -> Path:
    try:
        return roots.existing(folder, "folder", "model folder")
    except RefusedReference as exc:
        raise _bad(param, str(exc)) from None


def resolve_model_path(backend: Backend, name: str, path: str | None) -> str:
    """The folder to serve, under the allowed folders (``shared/paths.py``) whichever way it
    was found."""
    roots = AllowedRoots.of(backend.common)
    if path is not None:
        return _servable(_allowed_folder(roots, path, "path"), "path")
    published = Path(backend.common.models_dir) / name
    if published.is_dir():
        return _servable(_allowed_folder(roots, str(published), "name"), "name")
    from_job = _job_result(backend.stores.jobs, name)
    if from_job is not None:
        return _servable(_allowed_folder(roots, from_job, "name"), "name")
    raise OpenAIError(
        404,
        f"No model named {name!r}: it is neither in the models folder (MODELS_DIR) nor the "
        "result of a finished fine-tuning job; pass its folder as 'path'.",
        param="name",
        code="model_not_found",
    )


@router.post("/v1/models/{name}/deploy")
def deploy(name: str, request: Request, body: DeployRequest | None = None) -> JSONResponse:
    _check_name(name)
    return _deploy(backend_of(request), name, body or DeployRequest())


def _deploy(backend: Backend, name: str, body: DeployRequest) -> JSONResponse:
    store = backend.stores.deployments
    existing = store.get(name)
    if existing is not None and existing["status"] not in (FAILED, UNDEPLOYING):
        return JSONResponse(existing, status_code=200)  # already (being) deployed
    if existing is not None and existing["status"] == UNDEPLOYING:
        raise OpenAIError(
            409,
            f"Model {name!r} is being undeployed; deploy it again once that is done.",
            param="name",
            code="deployment_conflict",
        )
    path = resolve_model_path(backend, name, body.path)
    if existing is not None:
        store.delete(name)  # a failed attempt: start over
    record = new_deployment_record(name, path, body.conv_template or "")
    try:
        store.create(record)
    except KeyError:  # a concurrent request created it first
        return JSONResponse(store.get(name), status_code=200)
    log.info("event=deploy_requested model=%s path=%s", name, path)
    return JSONResponse(record, status_code=202)


@router.get("/v1/models/{name}/deploy")
def get_deployment(name: str, request: Request) -> dict:
    record = backend_of(request).stores.deployments.get(name)
    if record is None:
        raise _not_found(name)
    return record


@router.delete("/v1/models/{name}/deploy")
def undeploy(name: str, request: Request) -> dict:
    store = backend_of(request).stores.deployments
    record = store.get(name)
    if record is None:
        raise _not_found(name)
    unheld = record["status"] in (PENDING, FAILED) and record.get("pool") is None
    # No worker holds it (checked again atomically, against a pool claiming it now): just drop it.
    if unheld and store.update_if(name, lambda r: r.get("pool") is None, status=UNDEPLOYING):
        store.delete(name)
        return {**record, "status": "undeployed"}
    updated = store.update(name, status=UNDEPLOYING)
    log.info("event=undeploy_requested model=%s", name)
    return updated or {**record, "status": "undeployed"}


@router.get("/v1/deployments")
def list_deployments(request: Request) -> dict:
    records, _ = backend_of(request).stores.deployments.list(limit=10_000)
    return {"object": "list", "data": records}
