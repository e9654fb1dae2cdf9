"""Console pages for accounts, administration and reports: change my password, users by area, the
administration hub (area tree, devices, pronunciation lexicon, installation settings), the monthly report.

Changes go through API v1 (``/api/v1/auth/password``, ``/api/v1/users``) from ``static/admin.js`` with the
CSRF header, like the rest of the console; exports are plain links to ``/api/v1/reports/monthly.{csv,xlsx}``
(GET, the session cookie suffices).

``install(app)`` also wires the API routers of this part (users, settings, reports) and turns
``PasswordChangeRequired`` into a redirect to the password page for console pages (a 403 for the API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.accounts import PASSWORD_MIN_LENGTH, admin_scope, areas_for_admin, list_users
from server.api import audit as audit_api
from server.api import reports as reports_api
from server.api import settings as settings_api
from server.api import users as users_api
from server.api.deps import SESSION_COOKIE, DbSession, RuntimeDep
from server.app_settings import require_installation_admin, setting_states
from server.audit import ACTIONS, OUTCOMES
from server.categories import CATEGORIES
from server.console.i18n import LANG_COOKIE, language_of, speaking
from server.console.routes import DEFAULT_TIMEZONE, _page_context, _render, _to_login, active_session, safe_next
from server.coordinates import LATITUDE_RANGE, LONGITUDE_RANGE
from server.directory import ActiveSession, PasswordChangeRequired, load_tree, resolve_session, visible_devices
from server.error_texts import translated
from server.errors import Forbidden, Invalid, NotFound, Unauthorized
from server.models import Area, AreaAlias, LexiconEntry
from server.permissions import Action, Role
from server.report_files import chart_svg
from server.reports import Month, monthly_report, report_areas
from server.runtime import Runtime

router = APIRouter(include_in_schema=False)
PASSWORD_PAGE = "/console/password"
ROLES = tuple(Role)
"""Their labels are in users.html (translated there)."""


def install(app: FastAPI) -> None:
    app.include_router(users_api.router)
    app.include_router(settings_api.router)
    app.include_router(reports_api.router)
    app.include_router(audit_api.router)
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
        **_page_context(active), "forced": active.must_change_password, "min_length": PASSWORD_MIN_LENGTH,
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
        "areas": areas_for_admin(db, active.principal), "roles": ROLES,
    }, runtime)


# --- administration ------------------------------------------------------------------------------------
# Pages for admins only (the role on some area); each shows and changes only what lies in the areas the
# user manages. The API checks every change again.

@dataclass(frozen=True)
class TreeRow:
    area: Area
    depth: int
    aliases: tuple[str, ...]


COORDINATE_BOUNDS = {"lat": [f"{v:g}" for v in LATITUDE_RANGE], "lon": [f"{v:g}" for v in LONGITUDE_RANGE]}


def _refusal(request: Request, active: ActiveSession, runtime: Runtime, status: int) -> Response:
    return _render(request, "refusal.html", {**_page_context(active), "status": status}, runtime, status_code=status)


def _managed_ids(db: Session, active: ActiveSession) -> set[int]:
    return {int(i) for i in active.principal.areas_for(Action.MANAGE, load_tree(db))}


def _admin_gate(request: Request, db: Session,
                runtime: Runtime) -> tuple[ActiveSession, set[int]] | Response:
    """The session and the areas it manages, or the page to show instead (log-in, or a 403 refusal)."""
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    managed = _managed_ids(db, active)
    if not managed:
        return _refusal(request, active, runtime, 403)
    return active, managed


def _is_installation_admin(db: Session, active: ActiveSession) -> bool:
    try:
        require_installation_admin(db, active.principal)
    except Forbidden:
        return False
    return True


def managed_tree(db: Session, managed: set[int]) -> list[TreeRow]:
    """The managed areas in tree order (each under its parent), with their depth below the top shown."""
    areas = db.scalars(select(Area).where(Area.id.in_(managed)).order_by(Area.code)).all()
    children: dict[int | None, list[Area]] = {}
    for area in areas:
        parent = area.parent_id if area.parent_id in managed else None
        children.setdefault(parent, []).append(area)
    aliases: dict[int, list[str]] = {}
    for alias in db.scalars(select(AreaAlias).where(AreaAlias.area_id.in_(managed)).order_by(AreaAlias.code)):
        aliases.setdefault(alias.area_id, []).append(alias.code)
    rows: list[TreeRow] = []
    stack = [(area, 0) for area in reversed(children.get(None, []))]
    while stack:
        area, depth = stack.pop()
        rows.append(TreeRow(area, depth, tuple(aliases.get(area.id, ()))))
        stack.extend((child, depth + 1) for child in reversed(children.get(area.id, [])))
    return rows


@router.get("/console/admin", response_model=None)
def get_admin_hub(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    gate = _admin_gate(request, db, runtime)
    if isinstance(gate, Response):
        return gate
    active, _managed = gate
    return _render(request, "admin.html", {
        **_page_context(active), "installation_admin": _is_installation_admin(db, active)}, runtime)


@router.get("/console/admin/areas", response_model=None)
def get_admin_areas(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    gate = _admin_gate(request, db, runtime)
    if isinstance(gate, Response):
        return gate
    active, managed = gate
    return _render(request, "admin_areas.html", {**_page_context(active), "rows": managed_tree(db, managed),
                                                    "bounds": COORDINATE_BOUNDS},
                   runtime)


def agent_mqtt_url(runtime: Runtime) -> str:
    """The broker address for an agent's configuration: no credentials, and the public host name in place
    of a loopback address (the embedded broker listens on the server's own address)."""
    broker = urlsplit(runtime.settings.broker_url)
    host = broker.hostname or ""
    if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        host = urlsplit(runtime.settings.effective_public_url).hostname or host
    port = f":{broker.port}" if broker.port else ""
    return f"{broker.scheme}://{host}{port}"


@router.get("/console/admin/devices", response_model=None)
def get_admin_devices(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    gate = _admin_gate(request, db, runtime)
    if isinstance(gate, Response):
        return gate
    active, managed = gate
    devices = [(d, s, a) for d, s, a in visible_devices(db, active.principal) if a.id in managed]
    areas = [row.area for row in managed_tree(db, managed)]
    return _render(request, "admin_devices.html", {
        **_page_context(active), "devices": devices, "areas": areas, "mqtt_url": agent_mqtt_url(runtime),
        "bounds": COORDINATE_BOUNDS}, runtime)


@router.get("/console/admin/lexicon", response_model=None)
def get_admin_lexicon(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    """Everyone may read the lexicon and try the spoken form; only admins add and delete (as the API)."""
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    entries = db.scalars(select(LexiconEntry).order_by(LexiconEntry.term)).all()
    return _render(request, "admin_lexicon.html", {
        **_page_context(active), "entries": entries, "can_edit": Role.ADMIN in active.principal.roles}, runtime)


@router.get("/console/admin/settings", response_model=None)
def get_admin_settings(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    if not _is_installation_admin(db, active):
        return _refusal(request, active, runtime, 403)
    return _render(request, "admin_settings.html", {
        **_page_context(active), "states": setting_states(db, runtime)}, runtime)


AUDIT_PER_PAGE = 50


@router.get("/console/admin/audit", response_model=None)
def get_admin_audit(request: Request, db: DbSession, runtime: RuntimeDep,
                    date_from: Annotated[str | None, Query(max_length=40)] = None,
                    date_to: Annotated[str | None, Query(max_length=40)] = None,
                    action: Annotated[str | None, Query(max_length=64)] = None,
                    user: Annotated[str | None, Query(max_length=64)] = None,
                    area_code: Annotated[str | None, Query(max_length=32)] = None,
                    target: Annotated[str | None, Query(max_length=200)] = None,
                    outcome: Annotated[str | None, Query(max_length=16)] = None,
                    page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    """The audit trail, filtered (the same rules and query as ``GET /api/v1/audit``), 50 events a page."""
    gate = _admin_gate(request, db, runtime)
    if isinstance(gate, Response):
        return gate
    active, managed = gate
    wanted = audit_api.audit_filter(date_from, date_to, action, user, area_code, target, outcome)
    query = {k: v for k, v in (("date_from", wanted.date_from), ("date_to", wanted.date_to),
                               ("action", wanted.action), ("user", wanted.user), ("area_code", wanted.area_code),
                               ("target", wanted.target), ("outcome", wanted.outcome)) if v}
    context: dict[str, Any] = {
        **_page_context(active), "filter": wanted, "actions": ACTIONS, "outcomes": OUTCOMES,
        "areas": [row.area for row in managed_tree(db, managed)], "query": urlencode(query), "found": None,
        "error": False}
    try:
        context["found"] = audit_api.list_events(db, active.principal, wanted, page=page, per_page=AUDIT_PER_PAGE,
                                                 timezone=runtime.settings.timezone or DEFAULT_TIMEZONE)
    except Invalid:
        context["error"] = True
    except NotFound:
        return _refusal(request, active, runtime, 404)
    return _render(request, "admin_audit.html", context, runtime, status_code=422 if context["error"] else 200)


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
            context["error"] = translated(str(exc), language_of(request.cookies.get(LANG_COOKIE)))
    code = area_code or (areas[0].code if areas else None)
    context.update(month=chosen, area_code=code or "")
    if code is not None and not context["error"]:
        try:
            report = monthly_report(db, active.principal, code, chosen, now=runtime.now(), timezone=timezone)
        except NotFound:
            return _render(request, "refusal.html", {**_page_context(active), "status": 404}, runtime,
                           status_code=404)
        with speaking(language_of(request.cookies.get(LANG_COOKIE))):
            chart = chart_svg(report)
        context.update(report=report, chart=chart)
    return _render(request, "reports.html", context, runtime, status_code=422 if context["error"] else 200)
