"""One error shape for every answer that is not a success: status, a short code, what went wrong in
words, and where to look instead (`see`, e.g. the list of the known sources)."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from flashes.errors import QuestDBError

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "too_large",
         422: "invalid", 429: "too_many_requests", 500: "internal", 503: "unavailable"}


class Problem(BaseModel):
    """The body of every error answer."""

    status: int = Field(examples=[404])
    error: str = Field(description="short code: not_found, invalid, unavailable, …", examples=["not_found"])
    detail: str = Field(examples=["unknown source 'gx 339'; list the known ones at /sources"])
    see: str | None = Field(default=None, description="where to look instead", examples=["/sources"])


class NotFound(HTTPException):
    def __init__(self, detail: str, see: str) -> None:
        super().__init__(404, detail)
        self.see = see


RESPONSES = {code: {"model": Problem, "description": text} for code, text in
             ((404, "an unknown source, tag, series or code"), (422, "an invalid parameter"),
              (503, "QuestDB or Kafka unavailable"))}


def answer(status: int, detail: str, see: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(status=status, error=CODES.get(status, "error"), detail=detail, see=see)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Every HTTP error, validation error and store outage answers with a Problem."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return answer(exc.status_code, str(exc.detail), getattr(exc, "see", None), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return answer(422, detail)

    @app.exception_handler(QuestDBError)
    async def store_down(request: Request, exc: QuestDBError) -> JSONResponse:
        return answer(503, f"the time-series store is unavailable: {exc}")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:  # logged with its traceback by the server
        return answer(500, f"internal error ({type(exc).__name__}); it is logged, please report it")
