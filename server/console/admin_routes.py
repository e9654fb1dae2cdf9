"""Console pages for accounts and reports: change my password, users by area, the monthly report.

Changes go through API v1 (``/api/v1/auth/password``, ``/api/v1/users``) from ``static/admin.js`` with the
CSRF header, like the rest of the console; exports are plain links to ``/api/v1/reports/monthly.{csv,xlsx}``
(GET, the session cookie suffices).

``install(app)`` also wires the API routers of this part (users, reports) and turns
``PasswordChangeRequired`` into a redirect to the password page for console pages (a 403 for the API).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from server.accounts import PASSWORD_RULE, admin_scope, areas_for_admin, list_users
from server.api import reports as reports_api
from server.api import users as users_api
from server.api.deps import SESSION_COOKIE, DbSession, RuntimeDep
from server.categories import CATEGORIES
from server.console.routes import DEFAULT_TIMEZONE, _page_context, _render, _to_login, active_session, safe_next
from server.directory import PasswordChangeRequired, resolve_session
from server.errors import Forbidden, Invalid, NotFound, Unauthorized
from server.permissions import Role
from server.report_files import chart_svg
from server.reports import Month, monthly_report, report_areas

router = APIRouter(include_in_schema=False)
PASSWORD_PAGE = "/console/password"
ROLE_LABELS = {Role.ADMIN: "Quản trị", Role.EDITOR: "Biên tập", Role.APPROVER: "Phê duyệt",
               Role.OPERATOR: "Vận hành", Role.VIEWER: "Xem"}


def install(app: FastAPI) -> None:
    app.include_router(users_api.router)
    app.include_router(reports_api.router)
    app.include_router(router)

    async def _password_change_required(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc), "code": "password_change_required"}, status_code=403)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PASSWORD_PAGE}?next={quote(safe_next(here), safe='')}", status_code=303)

    app.add_exception_handler(PasswordChangeRequired, _password_change_required)


# --- my password ---------------------------------------------------------------------------------------

@router.get(PASSWORD_PAGE, response_model=None)
def get_password_page(request: Request, db: DbSession, runtime: RuntimeDep,
                      next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    try:
        active = resolve_session(db, token, runtime.now(), allow_password_change_only=True) if token else None
    except Unauthorized:
        active = None
    if active is None:
        return _to_login(request)
    target = safe_next(next)
    return _render(request, "password.html", {
        **_page_context(active), "forced": active.must_change_password, "rule": PASSWORD_RULE,
        "next": PASSWORD_PAGE if target == PASSWORD_PAGE else target,
    }, runtime)


# --- users ---------------------------------------------------------------------------------------------

@router.get("/console/users", response_model=None)
def get_users_page(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    try:
        admin_scope(db, active.principal)
    except Forbidden:
        return _render(request, "refusal.html", {**_page_context(active), "status": 403}, runtime,
                       status_code=403)
    return _render(request, "users.html", {
        **_page_context(active), "users": list_users(db, active.principal, runtime.now()),
        "areas": areas_for_admin(db, active.principal), "role_labels": ROLE_LABELS,
    }, runtime)


# --- reports -------------------------------------------------------------------------------------------

@router.get("/console/reports", response_model=None)
def get_reports_page(request: Request, db: DbSession, runtime: RuntimeDep,
                     area_code: Annotated[str | None, Query(max_length=32)] = None,
                     month: Annotated[str | None, Query(max_length=10)] = None) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    timezone = runtime.settings.timezone or DEFAULT_TIMEZONE
    areas = report_areas(db, active.principal)
    context: dict[str, Any] = {**_page_context(active), "areas": areas, "report": None, "chart": "",
                               "error": "", "categories": CATEGORIES}
    chosen = Month.of(runtime.now(), timezone)
    if month:
        try:
            chosen = Month.parse(month)
        except Invalid as exc:
            context["error"] = str(exc)
    code = area_code or (areas[0].code if areas else None)
    context.update(month=chosen, area_code=code or "")
    if code is not None and not context["error"]:
        try:
            report = monthly_report(db, active.principal, code, chosen, now=runtime.now(), timezone=timezone)
        except NotFound:
            return _render(request, "refusal.html", {**_page_context(active), "status": 404}, runtime,
                           status_code=404)
        context.update(report=report, chart=chart_svg(report))
    return _render(request, "reports.html", context, runtime, status_code=422 if context["error"] else 200)
