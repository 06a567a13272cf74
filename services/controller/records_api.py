"""One router for every kind of job-like record under /v1: dataset builds, fine-tuning jobs,
merges and evaluations.

An API module declares a ``RecordAPI`` (its path, names, request schema and create hook: its own
checks, the record, the queued task), adds any routes of its own to ``api.router()`` and then
calls ``add_record_routes``. Every such API answers the same way:

- ``POST <path>``: 201 with the new record; 400 naming each bad field, code ``invalid_<kind>``;
- ``GET <path>?limit=&after=``: newest first, ``{"object": "list", "data", "has_more"}``
  (``limit`` 1..100, ``after`` the last id of the previous page);
- ``GET <path>/{id}``: the record, or 404 ``<kind>_not_found`` with the id's name as ``param``;
- ``GET <path>/{id}/events`` where the kind keeps events (same paging);
- ``POST <path>/{id}/cancel``: ``records.cancel_record``, or the kind's own cancel.

Redis and file work runs in FastAPI's thread pool (plain ``def`` routes, ``run_in_threadpool``),
never on the event loop.
"""

# No ``from __future__ import annotations``: the routes built below annotate their parameters
# with this API's own types, which FastAPI must see as objects, not names.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from services.controller.openai_errors import OpenAIError
from services.controller.openai_routes import openai_route
from services.controller.records import Backend, CancelOutcome, Page, cancel_record, page
from shared.job_records import EventLog, RecordStore
from shared.stores import Stores

B = TypeVar("B")
Record = dict[str, Any]


@dataclass(frozen=True)
class RecordAPI(Generic[B]):
    path: str  # "/v1/fine_tuning/jobs"
    kind: str  # "fine_tuning_job": codes invalid_<kind> and <kind>_not_found
    id_param: str  # "fine_tuning_job_id": the path parameter, named by a 404
    store: Callable[[Stores], RecordStore]
    create: Callable[[Backend, B], Record]  # runs in a worker thread
    # The JSON body FastAPI validates (and documents) for ``create``; or else ``read_body``
    # reads it (a multipart upload), with ``body_doc`` as the route's OpenAPI additions.
    schema: type[BaseModel] | None = None
    read_body: Callable[[Request, Backend], Awaitable[B]] | None = None
    body_doc: dict[str, Any] | None = None
    events: Callable[[Stores], EventLog] | None = None
    cancel: Callable[[Backend, str], CancelOutcome | None] | None = None
    noun: str = ""  # in messages ("No merge 'x'."); default: the kind in words
    tag: str = ""  # of the OpenAPI document; default: the noun's plural

    def __post_init__(self) -> None:
        noun = self.noun or self.kind.replace("_", " ")
        object.__setattr__(self, "noun", noun)
        object.__setattr__(self, "tag", self.tag or f"{noun}s")

    def router(self) -> APIRouter:
        """An empty router for this API, for routes of its own, then ``add_record_routes``."""
        route_class = openai_route(f"invalid_{self.kind}")
        return APIRouter(prefix=self.path, tags=[self.tag], route_class=route_class)

    def not_found(self, record_id: str) -> OpenAIError:
        return OpenAIError(
            404,
            f"No {self.noun} {record_id!r}.",
            param=self.id_param,
            code=f"{self.kind}_not_found",
        )

    def get(self, backend: Backend, record_id: str) -> Record:
        record = self.store(backend.stores).get(record_id)
        if record is None:
            raise self.not_found(record_id)
        return record

    def cancel_one(self, backend: Backend, record_id: str) -> Record:
        if self.cancel is not None:
            outcome = self.cancel(backend, record_id)
        else:
            outcome = cancel_record(self.store(backend.stores), record_id)
        if outcome is None:
            raise self.not_found(record_id)
        return outcome.record


def backend_of(request: Request) -> Backend:
    return request.app.state.backend


def add_record_routes(router: APIRouter, api: RecordAPI[Any]) -> APIRouter:
    record_id_param = Annotated[str, Path(alias=api.id_param)]
    item = "/{" + api.id_param + "}"
    _add_create(router, api)

    def list_records(request: Request, limit: int = 20, after: str | None = None) -> Page:
        return page(api.store(backend_of(request).stores).list, limit, after, api.noun)

    def get_record(record_id: record_id_param, request: Request) -> Record:
        return api.get(backend_of(request), record_id)

    def cancel(record_id: record_id_param, request: Request) -> Record:
        return api.cancel_one(backend_of(request), record_id)

    router.add_api_route("", list_records, methods=["GET"], name=f"list_{api.kind}")
    router.add_api_route(item, get_record, methods=["GET"], name=f"get_{api.kind}")
    if api.events is not None:
        _add_events(router, api, api.events, record_id_param)
    router.add_api_route(item + "/cancel", cancel, methods=["POST"], name=f"cancel_{api.kind}")
    return router


def _add_create(router: APIRouter, api: RecordAPI[Any]) -> None:
    async def created(request: Request, body: Any) -> JSONResponse:
        record = await run_in_threadpool(api.create, backend_of(request), body)
        return JSONResponse(record, status_code=201)

    schema = api.schema
    if schema is not None:

        async def create(body: schema, request: Request) -> JSONResponse:
            return await created(request, body)

    else:
        read_body = api.read_body
        assert read_body is not None, f"{api.path}: give a schema or read_body"

        async def create(request: Request) -> JSONResponse:
            return await created(request, await read_body(request, backend_of(request)))

    router.add_api_route(
        "",
        create,
        methods=["POST"],
        status_code=201,
        name=f"create_{api.kind}",
        openapi_extra=api.body_doc,
    )


def _add_events(
    router: APIRouter,
    api: RecordAPI[Any],
    events_of: Callable[[Stores], EventLog],
    record_id_param: Any,
) -> None:
    def list_events(
        record_id: record_id_param, request: Request, limit: int = 20, after: str | None = None
    ) -> Page:
        backend = backend_of(request)
        api.get(backend, record_id)
        events = events_of(backend.stores)

        def fetch(size: int, last: str | None) -> tuple[list[Record], bool]:
            return events.page(record_id, size, last)

        return page(fetch, limit, after, "event")

    path = "/{" + api.id_param + "}/events"
    router.add_api_route(path, list_events, methods=["GET"], name=f"list_{api.kind}_events")
