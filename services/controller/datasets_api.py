"""``/v1/datasets``: build a training set from CAMEL, ShareGPT, Alpaca or your own files.

The controller validates and records the request, then queues ``ingest.build_dataset`` for the
ingestor service; progress and the manifest are read back from the shared record in Redis.
Routes are plain ``def``: FastAPI runs them in its thread pool, so Redis calls never block the
event loop.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from services.controller.openai_errors import OpenAIError
from shared.celery_app import BUILD_DATASET_TASK, INGEST_QUEUE
from shared.datasets import (
    DATASET_SOURCE_KEYS,
    TERMINAL_STATUSES,
    DatasetSpec,
    new_dataset_id,
    new_dataset_record,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _bad(message: str, param: str) -> OpenAIError:
    """Errors under /v1 take OpenAI's shape, like the rest of the /v1 API."""
    return OpenAIError(400, message, param=param)


def check_sources(sources: list[str]) -> None:
    """Each source must be a known Hub key, an http(s) URL or a path that exists here."""
    for i, source in enumerate(sources):
        if source in DATASET_SOURCE_KEYS or source.startswith(("http://", "https://")):
            continue
        if not Path(source).expanduser().exists():
            known = ", ".join(DATASET_SOURCE_KEYS)
            raise _bad(
                f"sources[{i}]: {source!r} is neither a known dataset ({known}, all), "
                "an http(s) URL, nor an existing path",
                f"sources[{i}]",
            )


def check_tokenizer(tokenizer: str) -> None:
    if not tokenizer:
        return
    path = Path(tokenizer).expanduser()
    looks_local = path.exists() or tokenizer.startswith((".", "/", "~"))
    if looks_local and not (
        (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()
    ):
        raise _bad(f"tokenizer: {tokenizer!r} is not a folder holding a tokenizer", "tokenizer")


def _spec_from_validation(data: dict[str, Any]) -> DatasetSpec:
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        messages = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise _bad(messages, loc) from None


async def _read_request(request: Request, dataset_dir: Path) -> dict[str, Any]:
    """JSON body, or multipart form fields plus uploaded files (saved into the dataset)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        data: dict[str, Any] = {}
        for field in ("tokenizer", "max_length", "keep_lang", "skip_lang", "reduce_rep", "seed"):
            if (value := form.get(field)) not in (None, ""):
                data[field] = value
        raw_sources = form.get("sources") or ""
        assert isinstance(raw_sources, str)
        sources: list[str] = []
        if raw_sources.strip().startswith("["):
            try:
                sources = json.loads(raw_sources)
            except ValueError:
                raise _bad("sources: not a JSON list", "sources") from None
        elif raw_sources.strip():
            sources = [s.strip() for s in raw_sources.split(",") if s.strip()]
        uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        for upload in uploads:
            name = _SAFE_NAME.sub("_", Path(upload.filename or "upload").name) or "upload"
            target = dataset_dir / "uploads" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                while chunk := await upload.read(1 << 20):
                    out.write(chunk)
            sources.append(str(target))
        data["sources"] = sources
        return data
    try:
        data = await request.json()
    except ValueError as exc:
        raise _bad(f"body: malformed JSON ({exc})", "body") from None
    if not isinstance(data, dict):
        raise _bad("body: expected a JSON object", "body")
    return data


@router.post("", status_code=201)
async def create_dataset(request: Request) -> JSONResponse:
    state = request.app.state
    dataset_id = new_dataset_id()
    dataset_dir = state.common.datasets_dir / dataset_id
    data = await _read_request(request, dataset_dir)
    spec = _spec_from_validation(data)
    check_sources(spec.sources)
    check_tokenizer(spec.tokenizer)
    record = new_dataset_record(dataset_id, spec, str(dataset_dir)).model_dump()
    state.datasets.create(record)
    state.celery.send_task(BUILD_DATASET_TASK, args=[dataset_id], queue=INGEST_QUEUE)
    log.info("event=dataset_queued id=%s sources=%s", dataset_id, spec.sources)
    return JSONResponse(record, status_code=201)


@router.get("")
def list_datasets(request: Request, limit: int = 20, after: str | None = None) -> dict:
    if not 1 <= limit <= 100:
        raise _bad("limit: must be between 1 and 100", "limit")
    try:
        records, has_more = request.app.state.datasets.list(limit, after)
    except KeyError:
        raise _bad(f"after: unknown dataset {after!r}", "after") from None
    return {"object": "list", "data": records, "has_more": has_more}


def _get(request: Request, dataset_id: str) -> dict[str, Any]:
    record = request.app.state.datasets.get(dataset_id)
    if record is None:
        raise OpenAIError(
            404, f"No dataset {dataset_id!r}.", param="dataset_id", code="dataset_not_found"
        )
    return record


@router.get("/{dataset_id}")
def get_dataset(dataset_id: str, request: Request) -> dict:
    return _get(request, dataset_id)


@router.post("/{dataset_id}/cancel")
def cancel_dataset(dataset_id: str, request: Request) -> dict:
    record = _get(request, dataset_id)
    if record["status"] in TERMINAL_STATUSES:
        return record
    # The ingestor checks this flag at its next progress report and stops there.
    return request.app.state.datasets.update(dataset_id, cancel_requested=True) or record
