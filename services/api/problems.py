"""One error shape for every answer that is not a success: status, a short code, what went wrong in
words, and where to look instead (`see`, e.g. the list of the known sources).

The API's errors are typed (`ApiError` and its kinds): the services raise them, the JSON routes answer
them as a Problem (`install`), and the pages show their words with their status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from flashes.errors import QuestDBError

CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class Problem(BaseModel):
    """The body of every error answer."""

    status: int = Field(examples=[404])
    error: str = Field(description="short code: not_found, invalid, unavailable, …", examples=["not_found"])
    detail: str = Field(examples=["unknown source 'gx 339'; list the known ones at /sources"])
    see: str | None = Field(default=None, description="where to look instead", examples=["/sources"])


class ApiError(HTTPException):
    """A refusal in words, with the status its kind gives and optionally where to look instead. An HTTPException,
    so that FastAPI answers one raised anywhere (a dependency, a middleware's read) through `install`."""

    status: ClassVar[int] = 500

    def __init__(self, detail: str, see: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status, detail, headers)
        self.see = see


class NotFound(ApiError):
    status = 404


class TooLarge(ApiError):
    status = 413


class Invalid(ApiError):
    status = 422


class TooMany(ApiError):
    """A budget is spent: `retry_after` seconds until it allows one more (the Retry-After header)."""

    status = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class Unavailable(ApiError):
    status = 503


RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in (
        (404, "an unknown source, tag, series or code"),
        (422, "an invalid parameter"),
        (503, "QuestDB or Kafka unavailable"),
    )
}


def answer(status: int, detail: str, see: str | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = Problem(status=status, error=CODES.get(status, "error"), detail=detail, see=see)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def invalid_fields(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line, "where: what" for each (the input itself is never repeated)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)


def install(app: FastAPI) -> None:
    """Every HTTP error, validation error and store outage answers with a Problem."""

    @app.exception_handler(StarletteHTTPException)  # Starlette's own too: an unknown path, a wrong method
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(exc.status_code, str(exc.detail), getattr(exc, "see", None), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(422, invalid_fields(exc.errors()))

    @app.exception_handler(QuestDBError)
    async def store_down(request: Request, exc: QuestDBError) -> JSONResponse:
        return answer(503, f"the time-series store is unavailable: {exc}")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:  # logged with its traceback by the server
        return answer(500, f"internal error ({type(exc).__name__}); it is logged, please report it")
