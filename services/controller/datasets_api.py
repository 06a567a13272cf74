"""``/v1/datasets``: build a training set from CAMEL, ShareGPT, Alpaca or your own files.

The controller validates and records the request, then queues ``ingest.build_dataset`` for the
ingestor service; progress and the manifest are read back from the shared record in Redis. The
body is a JSON ``DatasetSpec``, or a multipart form with the same fields (``sources`` as a JSON
list or comma-separated) plus uploaded ``file``s, saved into the dataset's folder as sources.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from services.controller.field_errors import InvalidFields, Problem, raise_if, validated
from services.controller.records import Backend
from services.controller.records_api import RecordAPI, add_record_routes
from shared.celery_app import BUILD_DATASET_TASK, INGEST_QUEUE
from shared.contracts import looks_like_path
from shared.datasets import DATASET_SOURCE_KEYS, DatasetSpec, new_dataset_id, new_dataset_record

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_FORM_FIELDS = ("tokenizer", "max_length", "keep_lang", "skip_lang", "reduce_rep", "seed")


@dataclass(frozen=True)
class NewDataset:
    id: str
    folder: Path
    spec: DatasetSpec


def check_sources(sources: list[str]) -> list[Problem]:
    """Each source must be a known Hub key, an http(s) URL or a path that exists here."""
    known = ", ".join(DATASET_SOURCE_KEYS)
    return [
        (
            f"sources[{i}]",
            f"{source!r} is neither a known dataset ({known}, all), "
            "an http(s) URL, nor an existing path",
        )
        for i, source in enumerate(sources)
        if source not in DATASET_SOURCE_KEYS
        and not source.startswith(("http://", "https://"))
        and not Path(source).expanduser().exists()
    ]


def check_tokenizer(tokenizer: str) -> list[Problem]:
    """A tokenizer given as a path must be a folder holding one (a Hub id is checked later)."""
    if not tokenizer or not looks_like_path(tokenizer):
        return []
    path = Path(tokenizer).expanduser()
    if (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists():
        return []
    return [("tokenizer", f"{tokenizer!r} is not a folder holding a tokenizer")]


async def read_request(request: Request, backend: Backend) -> NewDataset:
    """JSON body, or multipart form fields plus uploaded files (saved into the dataset)."""
    dataset_id = new_dataset_id()
    folder = backend.common.datasets_dir / dataset_id
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        data = await _read_form(await request.form(), folder)
    else:
        data = await _read_json(request)
    return NewDataset(dataset_id, folder, validated(DatasetSpec, data))


async def _read_json(request: Request) -> Any:
    try:
        data = await request.json()
    except ValueError as exc:
        raise InvalidFields([("body", f"malformed JSON ({exc})")]) from None
    if not isinstance(data, dict):
        raise InvalidFields([("body", "expected a JSON object")])
    return data


async def _read_form(form: FormData, folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = {f: v for f in _FORM_FIELDS if (v := form.get(f)) not in (None, "")}
    raw = form.get("sources") or ""
    raw = raw.strip() if isinstance(raw, str) else ""
    sources: list[str] = []
    if raw.startswith("["):
        try:
            sources = json.loads(raw)
        except ValueError:
            raise InvalidFields([("sources", "not a JSON list")]) from None
    elif raw:
        sources = [s.strip() for s in raw.split(",") if s.strip()]
    for upload in form.getlist("file"):
        if isinstance(upload, UploadFile):
            sources.append(await _save_upload(upload, folder / "uploads"))
    data["sources"] = sources
    return data


async def _save_upload(upload: UploadFile, folder: Path) -> str:
    name = _SAFE_NAME.sub("_", Path(upload.filename or "upload").name) or "upload"
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        while chunk := await upload.read(1 << 20):
            out.write(chunk)
    return str(target)


def create_dataset(backend: Backend, new: NewDataset) -> dict[str, Any]:
    raise_if(check_sources(new.spec.sources) + check_tokenizer(new.spec.tokenizer))
    record = new_dataset_record(new.id, new.spec, str(new.folder)).model_dump()
    backend.stores.datasets.create(record)
    backend.celery.send_task(BUILD_DATASET_TASK, args=[new.id], queue=INGEST_QUEUE)
    log.info("event=dataset_queued id=%s sources=%s", new.id, new.spec.sources)
    return record


def _form_schema() -> dict[str, Any]:
    fields = {name: {"type": "string"} for name in (*_FORM_FIELDS, "sources")}
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}
    return {"type": "object", "properties": {**fields, "file": files}, "required": ["sources"]}


# FastAPI cannot take one body as JSON or a form, so the route reads it and documents both here.
BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DatasetSpec.model_json_schema()},
            "multipart/form-data": {"schema": _form_schema()},
        },
    }
}

DATASETS: RecordAPI[NewDataset] = RecordAPI(
    path="/v1/datasets",
    kind="dataset",
    id_param="dataset_id",
    store=lambda stores: stores.datasets,
    create=create_dataset,
    read_body=read_request,
    body_doc=BODY_DOC,
)

router = add_record_routes(DATASETS.router(), DATASETS)
