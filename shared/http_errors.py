"""One error shape for every HTTP service: ``{"text", "error_code", "param"}`` with a 4xx/5xx."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.constants import ErrorCode
from shared.schemas import ErrorBody

log = logging.getLogger(__name__)


class APIError(Exception):
    """Raised by route code to answer with a clear error; handled in one place."""

    def __init__(
        self,
        status_code: int,
        message: str,
        error_code: ErrorCode = ErrorCode.VALIDATION_TYPE_ERROR,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_code = error_code
        self.param = param
        self.headers = headers


def error_response(
    status_code: int,
    message: str,
    error_code: int,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(text=message, error_code=int(error_code), param=param)
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def describe_validation_error(exc: RequestValidationError) -> tuple[str, str | None]:
    """A readable message naming each bad field, and the first field's name.

    Union members (``stop: str | list[str]``) are reported under the field itself, not under
    pydantic's internal branch names.
    """
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            detail = err.get("ctx", {}).get("error", err["msg"])
            by_field.setdefault("body", []).append(f"malformed JSON ({detail})")
            continue
        if not loc:
            by_field.setdefault("body", []).append(
                "expected a JSON object (send Content-Type: application/json)"
            )
            continue
        field = str(loc[0]) + "".join(f"[{p}]" for p in loc[1:] if isinstance(p, int))
        by_field.setdefault(field, []).append(err["msg"])
    parts = [f"{field}: {' or '.join(dict.fromkeys(msgs))}" for field, msgs in by_field.items()]
    first = next((f for f in by_field if f != "body"), None)
    return "; ".join(parts) or "invalid request", first


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_error(exc)
        return error_response(400, message, ErrorCode.VALIDATION_TYPE_ERROR, param)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status_code, exc.message, exc.error_code, exc.param, exc.headers)
