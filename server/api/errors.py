"""Where Loa's errors become HTTP statuses (and nowhere else)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from schedules.errors import LoaError, ScheduleError
from server.console.i18n import LANG_COOKIE, language_of
from server.error_texts import translated
from server.errors import ConfigError, Conflict, Forbidden, Invalid, NotFound, TooLarge, Unauthorized

_STATUS: list[tuple[type[LoaError], int]] = [
    (Unauthorized, 401), (Forbidden, 403), (NotFound, 404), (Conflict, 409), (TooLarge, 413), (Invalid, 422),
    (ScheduleError, 422), (ConfigError, 500),
]


def error_body(exc: LoaError, language: str = "en") -> dict[str, Any]:
    """``{"detail": message, "message": …}`` for every error; coded errors add ``"error": {"code", "message", …}``.

    ``detail`` is the message as raised (clients and logs that already read it); ``message`` is the same
    in `language` (`server.error_texts`: the console sends its language cookie); ``error`` lets the
    console word a known error from its code and values (e.g. the area name to type).
    """
    body: dict[str, Any] = {"detail": str(exc), "message": translated(str(exc), language)}
    code = getattr(exc, "code", "")
    if code:
        details = getattr(exc, "details", {}) or {}
        body["error"] = {**details, "code": code, "message": str(exc)}
    return body


def install(app: FastAPI) -> None:
    @app.exception_handler(LoaError)
    async def _loa_error(request: Request, exc: LoaError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        return JSONResponse(error_body(exc, request_language(request)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append({"field": where, "message": error.get("msg", "invalid")})
        readable = "; ".join(f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems)
        # Field-level messages come from pydantic, in English; the sentence around them follows the console.
        said = f"Dữ liệu gửi lên không hợp lệ: {readable}" if request_language(request) == "vi" else readable
        return JSONResponse({"detail": readable, "message": said, "errors": problems}, status_code=422)


def request_language(request: Request) -> str:
    """The console's language for this request (its cookie; Vietnamese by default, as the console)."""
    return language_of(request.cookies.get(LANG_COOKIE))
