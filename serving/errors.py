"""Every error the server answers, as ``{"error": message}``: its own problems (:class:`HTTPProblem`), bad input
from the parsers (400, 415, 422), a failed parse worker (422 or 503), Starlette's 404 and 405, request validation
(422, with the details) and anything unexpected (500, the exception's type only)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .kserve import BadRequest
from .parsing import UnsupportedMedia
from .preprocess import BadCloud
from .strict_json import BadJSON, BadNumbers
from .workers import WorkerFailed


class HTTPProblem(Exception):
    """An answer other than 200 that a route decides on (unknown model, not ready, malformed multipart)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every error body is ``{"error": message}``, whatever raised it."""
    statuses = {HTTPProblem: None, BadJSON: 400, BadRequest: 400, BadCloud: 422, BadNumbers: 422, UnsupportedMedia: 415}
    for kind, status in statuses.items():

        async def handle(_: Request, err: Exception, status: int | None = status):
            return error_response(status or err.status, getattr(err, "message", None) or str(err))

        app.add_exception_handler(kind, handle)

    @app.exception_handler(WorkerFailed)
    async def worker_failed(_: Request, err: WorkerFailed):
        return error_response(err.status, err.message, {"retry-after": "1"} if err.status == 503 else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError):
        body = {"error": "invalid request", "detail": jsonable(err.errors())}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(_: Request, err: Exception):
        return error_response(500, f"internal server error ({type(err).__name__})")


def jsonable(value):
    """Validation error details with anything non-JSON (exceptions in ``ctx``) turned into strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
