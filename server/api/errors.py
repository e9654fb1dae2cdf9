"""Where Loa's errors become HTTP statuses (and nowhere else)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from schedules.errors import LoaError, ScheduleError
from server.errors import ConfigError, Conflict, Forbidden, Invalid, NotFound, TooLarge, Unauthorized

_STATUS: list[tuple[type[LoaError], int]] = [
    (Unauthorized, 401), (Forbidden, 403), (NotFound, 404), (Conflict, 409), (TooLarge, 413), (Invalid, 422),
    (ScheduleError, 422), (ConfigError, 500),
]


def error_body(exc: LoaError) -> dict[str, Any]:
    """``{"detail": message}`` for every error; coded errors add ``"error": {"code", "message", …}``.

    ``detail`` stays for clients that read the English message; ``error`` lets the console word a known
    error in the user's language from its code and values (e.g. the area name to type).
    """
    body: dict[str, Any] = {"detail": str(exc)}
    code = getattr(exc, "code", "")
    if code:
        details = getattr(exc, "details", {}) or {}
        body["error"] = {**details, "code": code, "message": str(exc)}
    return body


def install(app: FastAPI) -> None:
    @app.exception_handler(LoaError)
    async def _loa_error(request: Request, exc: LoaError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        return JSONResponse(error_body(exc), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append({"field": where, "message": error.get("msg", "invalid")})
        readable = "; ".join(f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems)
        return JSONResponse({"detail": readable, "errors": problems}, status_code=422)
