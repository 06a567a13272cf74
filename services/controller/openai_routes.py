"""The route class of the controller's /v1 REST routers (datasets, fine-tuning jobs, merges,
evaluations, deployments): one error shape for all of them.

FastAPI validates the declared request models (so they appear in the OpenAPI document); this
class turns its 422 into OpenAI's 400 naming the field (``param`` and the message's first words:
``"hyperparameters.n_epochs: Input should be greater than 0"``), with the API's own ``code``, and
does the same for ``InvalidFields`` raised by the routes' own checks. Malformed JSON is a 400 with
``param: "body"``. A body is read as JSON whatever its content type (as ``curl -d`` sends it),
except multipart forms.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from services.controller.field_errors import InvalidFields, problems_of
from services.controller.openai_errors import from_invalid_fields

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# Where FastAPI found the bad value; the caller names the field, not the part of the request.
_REQUEST_PARTS = ("body", "query", "path", "header", "cookie")
_BODY_METHODS = ("POST", "PUT", "PATCH")


class OpenAIRoute(APIRoute):
    """Use through ``openai_route(code)``: ``code`` is the ``code`` of the API's 400s."""

    invalid_code: str | None = None

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        code = self.invalid_code

        async def route(request: Request) -> Response:
            try:
                return await handler(_read_as_json(request))
            except RequestValidationError as exc:
                raise from_invalid_fields(invalid_fields(exc), code) from None
            except InvalidFields as exc:
                raise from_invalid_fields(exc, code) from None

        return route


def openai_route(code: str | None) -> type[APIRoute]:
    """The route class for an API whose 400s carry ``code`` (e.g. ``invalid_merge``)."""
    return type(f"OpenAIRoute_{code}", (OpenAIRoute,), {"invalid_code": code})


def invalid_fields(exc: RequestValidationError) -> InvalidFields:
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if loc and loc[0] in _REQUEST_PARTS:
            loc = loc[1:]
        if err.get("type") == "missing" and not loc:
            err = {**err, "msg": "a JSON object is required"}
        errors.append({**err, "loc": loc})
    return InvalidFields(problems_of(errors))


def _read_as_json(request: Request) -> Request:
    content_type = request.headers.get("content-type", "")
    if (
        request.method not in _BODY_METHODS
        or content_type.startswith("multipart/form-data")
        or "json" in content_type
    ):
        return request
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return Request({**request.scope, "headers": headers}, request.receive)
