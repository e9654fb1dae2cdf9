"""The web console: server-rendered pages (Jinja2) over the same services as API v1.

Pages read with the session cookie (``loa_session``) and hand the session's CSRF token to the browser in
``<meta name="csrf-token">``; every change the browser makes goes through API v1 with that token in the
``X-CSRF-Token`` header (see ``server/static/console.js``). The only forms posted to the console itself
are log-in (no session yet; checked by ``Origin`` and the SameSite=Strict cookie) and log-out (carries the
CSRF token as a hidden field).

Live updates come from ``/console/events`` (Server-Sent Events). The runtime's live bus fans every event
out to every listener, so this module filters the stream per user: a commune's console only hears about
that commune's loudspeakers and announcements.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlparse
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId
from server.api.asrun import list_as_run
from server.api.deps import SESSION_COOKIE, DbSession, RuntimeDep
from server.api.devices import device_public
from server.api.schemas import DevicePublic
from server.broadcasts import list_broadcasts
from server.categories import CATEGORIES
from server.console.device_page import device_page_context
from server.console.fleet import (
    counts_by_area,
    display_state,
    fleet_devices,
    map_data,
    tile_source,
    total_counts,
)
from server.console.i18n import LANG_COOKIE, LANGUAGES, language_of, speaking, translate
from server.content import get_announcement, list_announcements
from server.directory import (
    ActiveSession,
    get_visible_device,
    load_tree,
    login,
    logout,
    resolve_session,
    visible_areas,
    visible_devices,
)
from server.errors import Invalid, NotFound, Unauthorized
from server.models import Announcement, Area, Broadcast, DeviceStatus
from server.permissions import Action, Principal
from server.reports import AsRunFilter, AsRunRow, as_run, parse_local_date
from server.runtime import Runtime
from server.security import same

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
DEFAULT_NEXT = "/console"
SCOPE_REFRESH_S = 60.0
"""How often a live stream re-checks its session and the user's devices."""
UNKNOWN_AGENT_REFRESH_S = 5.0
"""At most this often, an event for an agent not (yet) in the user's scope triggers a re-check."""

_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{img}; "
        "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Everything is served by this server: no inline script, no CDN, no framing.
    "Content-Security-Policy": _CSP.format(img=""),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_CSP_SOURCE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


def page_headers(img_origins: Iterable[str] = ()) -> dict[str, str]:
    """``PAGE_HEADERS``, with images also allowed from these origins (the dashboard's optional map tiles).

    Only bare ``http(s)://host[:port]`` origins are accepted: nothing else of the policy can be widened.
    """
    origins = list(img_origins)
    if not origins:
        return PAGE_HEADERS
    for origin in origins:
        if not _CSP_SOURCE.match(origin):
            raise ValueError(f"not an origin for img-src: {origin!r}")
    return {**PAGE_HEADERS, "Content-Security-Policy": _CSP.format(img="".join(f" {o}" for o in origins))}

router = APIRouter(include_in_schema=False)


templates = Jinja2Templates(directory=TEMPLATES_DIR)


# --- template helpers --------------------------------------------------------------------------------

def format_local(value: datetime | str | None, timezone: str = DEFAULT_TIMEZONE) -> str:
    """``dd/mm/yyyy HH:MM:SS`` (24 h) in the installation's time zone; empty for no value."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the console; use aware times")
    return value.astimezone(ZoneInfo(timezone)).strftime("%d/%m/%Y %H:%M:%S")


@pass_context
def _local_datetime_filter(context: Context, value: datetime | str | None) -> str:
    return format_local(value, context.get("timezone", DEFAULT_TIMEZONE))


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


templates.env.filters["local_datetime"] = _local_datetime_filter
templates.env.filters["iso"] = _iso
templates.env.globals["_"] = translate


def _render(request: Request, name: str, context: dict[str, Any], runtime: Runtime,
            status_code: int = 200, img_origins: Iterable[str] = ()) -> HTMLResponse:
    lang = language_of(request.cookies.get(LANG_COOKIE))
    base = {"timezone": runtime.settings.timezone or DEFAULT_TIMEZONE, "user": None, "csrf_token": "",
            "page": name.removesuffix(".html"), "lang": lang, "languages": LANGUAGES,
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    base.update(context)
    with speaking(lang):  # TemplateResponse renders at once, inside this block
        return templates.TemplateResponse(request, name, base, status_code=status_code,
                                          headers=page_headers(img_origins))


# --- sessions ----------------------------------------------------------------------------------------

def active_session(request: Request, db: Session, runtime: Runtime) -> ActiveSession | None:
    """The user behind the session cookie, or None when there is no valid session."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return resolve_session(db, token, runtime.now())
    except Unauthorized:
        return None


def safe_next(value: str | None) -> str:
    """Only local paths are followed after log-in (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return DEFAULT_NEXT
    if any(ord(c) < 32 for c in value):
        return DEFAULT_NEXT
    return value


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = "/login" if here == DEFAULT_NEXT else f"/login?next={quote(here, safe='')}"
    return RedirectResponse(target, status_code=303)


def _same_origin(request: Request, runtime: Runtime) -> bool:
    """Browsers send ``Origin`` on form posts; a foreign one is a cross-site request.

    The request's own host and the configured public URL's host are both ours (a reverse proxy may
    rewrite ``Host``).
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    ours = {request.headers.get("host", ""), urlparse(runtime.settings.effective_public_url).netloc}
    return origin != "null" and urlparse(origin).netloc in ours


def _page_context(active: ActiveSession) -> dict[str, Any]:
    return {"user": active.principal, "csrf_token": active.csrf_token}


def _set_session_cookie(response: Response, runtime: Runtime, token: str) -> None:
    """The same cookie as ``POST /api/v1/auth/login`` sets."""
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=runtime.settings.environment == "production",
                        max_age=runtime.settings.session_hours * 3600)


# --- pages: log in / out ------------------------------------------------------------------------------

@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse(DEFAULT_NEXT, status_code=303)


@router.get("/console/lang/{code}", response_model=None)
def set_language(code: str, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    """Remember the console language in a cookie (a preference, not a credential) and go back."""
    if code not in LANGUAGES:
        raise NotFound(f"unknown language {code!r}; known: {', '.join(LANGUAGES)}")
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, samesite="lax", httponly=True)
    return response


@router.get("/login", response_model=None)
def get_login(request: Request, db: DbSession, runtime: RuntimeDep,
              next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    if active_session(request, db, runtime) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _render(request, "login.html", {"next": safe_next(next), "error": "", "username": ""}, runtime)


@router.post("/login", response_model=None)
def post_login(request: Request, runtime: RuntimeDep,
               username: Annotated[str, Form()] = "",
               password: Annotated[str, Form()] = "",
               next: Annotated[str, Form()] = "") -> Response:
    if not _same_origin(request, runtime):
        return _render(request, "refusal.html", {"status": 403}, runtime, status_code=403)
    target = safe_next(next[:2000])
    error = ""
    if not username or not password:
        error = "missing"
    elif len(username) > 64 or len(password) > 256:  # the API's limits; no argon2 run on huge input
        error = "wrong"
    else:
        try:
            with runtime.db.session() as db:  # committed before the redirect leaves
                session = login(db, username=username, password=password, now=runtime.now(),
                                lifetime=timedelta(hours=runtime.settings.session_hours))
        except Unauthorized:
            error = "refused"
    if error:
        return _render(request, "login.html", {"next": target, "error": error, "username": username[:64]},
                       runtime, status_code=401 if error in ("wrong", "refused") else 422)
    if session.must_change_password:  # after an admin reset: nothing else until the password is changed
        target = f"/console/password?next={quote(target, safe='')}"
    response = RedirectResponse(target, status_code=303)
    _set_session_cookie(response, runtime, session.token)
    return response


@router.post("/logout", response_model=None)
def post_logout(request: Request, runtime: RuntimeDep,
                csrf_token: Annotated[str, Form()] = "") -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with runtime.db.session() as db:
            try:  # a user who must change their password may still log out
                active: ActiveSession | None = resolve_session(db, token, runtime.now(),
                                                               allow_password_change_only=True)
            except Unauthorized:
                active = None
            sent = csrf_token or request.headers.get("x-csrf-token", "")
            if active is not None:
                if not sent or not same(sent, active.csrf_token):
                    return _render(request, "refusal.html", {"status": 403}, runtime, status_code=403)
                logout(db, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    return response


# --- pages: dashboard and devices ---------------------------------------------------------------------

_ITEM_ID = re.compile(r"^b(\d+)-")


def now_playing_titles(db: Session, item_ids: Iterable[str | None]) -> dict[str, str]:
    """Plan item ids (``b<broadcast>-<ms>``) mapped to their announcement's title, where known."""
    by_broadcast: dict[int, list[str]] = {}
    for item_id in item_ids:
        match = _ITEM_ID.match(item_id or "")
        if item_id and match:
            by_broadcast.setdefault(int(match.group(1)), []).append(item_id)
    if not by_broadcast:
        return {}
    rows = db.execute(select(Broadcast.id, Announcement.title)
                      .join(Announcement, Announcement.id == Broadcast.announcement_id)
                      .where(Broadcast.id.in_(by_broadcast))).all()
    return {item: title for broadcast_id, title in rows for item in by_broadcast.get(broadcast_id, [])}


@dataclass(frozen=True)
class DeviceRow:
    device: DevicePublic
    display_state: str
    now_playing_title: str


@router.get("/console", response_model=None)
def get_dashboard(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    principal = active.principal
    devices = fleet_devices(visible_devices(db, principal), principal, load_tree(db))
    tiles = tile_source(runtime.settings.map_tile_url)  # read per request: editable at run time
    return _render(request, "dashboard.html", {
        **_page_context(active), "devices": devices, "counts": total_counts(devices),
        "area_counts": counts_by_area(devices),
        "titles": now_playing_titles(db, (d.now_playing for d in devices)),
        "map": map_data(devices, visible_areas(db, principal), tiles[0] if tiles else None),
    }, runtime, img_origins=[tiles[1]] if tiles else [])


@router.get("/console/devices/{agent_id}", response_model=None)
def get_device_page(agent_id: str, request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    try:
        device = get_visible_device(db, active.principal, agent_id)
    except NotFound:
        # Outside the user's areas looks exactly like absent, so a device's existence does not leak.
        return _render(request, "refusal.html", {**_page_context(active), "status": 404}, runtime,
                       status_code=404)
    status = db.get(DeviceStatus, device.id)
    public = device_public(device, status, db.get_one(Area, device.area_id))
    titles = now_playing_titles(db, [public.now_playing])
    row = DeviceRow(public, display_state(public.state, public.now_playing),
                    titles.get(public.now_playing or "", ""))
    entries = list_as_run(db, active.principal, broadcast_id=None, agent_id=device.agent_id, limit=50)
    return _render(request, "device.html", {
        **_page_context(active), "row": row, "status": status, "entries": entries,
        "device_names": {device.agent_id: device.name},
        **device_page_context(db, active.principal, device, status, runtime.now()),
    }, runtime)


# --- pages: as-run ------------------------------------------------------------------------------------

def _positive_int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    number = int(value.strip())
    return number if number > 0 else None


@router.get("/console/as-run", response_model=None)
def get_as_run(request: Request, db: DbSession, runtime: RuntimeDep,
               agent_id: Annotated[str | None, Query(max_length=64)] = None,
               broadcast_id: Annotated[str | None, Query(max_length=20)] = None,
               limit: Annotated[str | None, Query(max_length=6)] = None,
               area_code: Annotated[str | None, Query(max_length=32)] = None,
               category: Annotated[str | None, Query(max_length=32)] = None,
               date_from: Annotated[str | None, Query(max_length=10)] = None,
               date_to: Annotated[str | None, Query(max_length=10)] = None) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    agent = (agent_id or "").strip() or None
    broadcast = _positive_int(broadcast_id)
    count = min(_positive_int(limit) or 200, 5000)
    area = (area_code or "").strip() or None
    wanted_category = (category or "").strip() or None
    typed = {"date_from": (date_from or "").strip(), "date_to": (date_to or "").strip()}
    error = ""
    entries: list[AsRunRow] = []
    try:
        wanted = AsRunFilter(area_code=area, agent_id=agent, broadcast_id=broadcast, category=wanted_category,
                             date_from=parse_local_date(typed["date_from"]) if typed["date_from"] else None,
                             date_to=parse_local_date(typed["date_to"]) if typed["date_to"] else None)
        entries = as_run(db, active.principal, wanted, timezone=runtime.settings.timezone or DEFAULT_TIMEZONE,
                         limit=count)
    except Invalid as exc:
        error = str(exc)
    except NotFound:
        return _render(request, "refusal.html", {**_page_context(active), "status": 404}, runtime,
                       status_code=404)
    devices = [d for d, _s, _a in visible_devices(db, active.principal)]
    extra = {k: v for k, v in (("area_code", area), ("category", wanted_category), *typed.items()) if v}
    return _render(request, "asrun.html", {
        **_page_context(active), "entries": entries, "devices": devices, "areas": visible_areas(db, active.principal),
        "categories": CATEGORIES, "device_names": {d.agent_id: d.name for d in devices},
        "filter_agent": agent or "", "filter_broadcast": broadcast or "", "limit": count,
        "filter_area": area or "", "filter_category": wanted_category or "", "filter_dates": typed,
        "filter_extra": urlencode(extra), "error": error,
    }, runtime, status_code=422 if error else 200)


# --- pages: announcements -----------------------------------------------------------------------------

@dataclass(frozen=True)
class AnnouncementCard:
    announcement: Announcement
    area: Area
    can_review: bool
    can_schedule: bool

    @property
    def schedulable(self) -> bool:
        a = self.announcement
        return self.can_schedule and a.review_status == "approved" and a.audio_status == "ready"


def _cards(db: Session, principal: Principal, announcements: list[Announcement]) -> list[AnnouncementCard]:
    tree = load_tree(db)
    areas = {a.id: a for a in db.scalars(select(Area).where(Area.id.in_({x.area_id for x in announcements})))}
    return [AnnouncementCard(a, areas[a.area_id],
                             can_review=principal.can(Action.APPROVE, AreaId(a.area_id), tree),
                             can_schedule=principal.can(Action.SCHEDULE, AreaId(a.area_id), tree))
            for a in announcements]


@router.get("/console/announcements", response_model=None)
def get_announcements_page(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    principal = active.principal
    tree = load_tree(db)
    areas = visible_areas(db, principal)
    edit_areas = [a for a in areas if principal.can(Action.EDIT_CONTENT, AreaId(a.id), tree)]
    schedule_areas = [a for a in areas if principal.can(Action.SCHEDULE, AreaId(a.id), tree)]
    schedule_area_ids = {a.id for a in schedule_areas}
    schedule_devices = [(d, a) for d, _s, a in visible_devices(db, principal)
                        if d.area_id in schedule_area_ids]
    now = runtime.now()
    broadcasts = [(b, b.status == "approved" and b.play_at > now
                   and principal.can(Action.SCHEDULE, AreaId(b.announcement.area_id), tree))
                  for b in list_broadcasts(db, principal)]
    today = format_local(now, runtime.settings.timezone or DEFAULT_TIMEZONE)
    return _render(request, "announcements.html", {
        **_page_context(active), "cards": _cards(db, principal, list_announcements(db, principal)),
        "edit_areas": edit_areas, "schedule_areas": schedule_areas, "schedule_devices": schedule_devices,
        "broadcasts": broadcasts, "today": today[:10], "now_time": today[11:16],
    }, runtime)


@router.get("/console/announcements/{announcement_id}/card", response_model=None)
def get_announcement_card(announcement_id: int, request: Request, db: DbSession,
                          runtime: RuntimeDep) -> Response:
    """One announcement's card as an HTML fragment, for the page to swap in after a change."""
    active = active_session(request, db, runtime)
    if active is None:
        return JSONResponse({"detail": "Phiên đăng nhập đã hết hạn"}, status_code=401)
    try:
        announcement = get_announcement(db, active.principal, announcement_id)
    except NotFound:
        return JSONResponse({"detail": "Không tìm thấy bản tin"}, status_code=404)
    card = _cards(db, active.principal, [announcement])[0]
    return _render(request, "_announcement_card.html", {**_page_context(active), "card": card}, runtime)


# --- live events --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventScope:
    """What one console user may hear of the live bus."""

    agent_ids: frozenset[str]
    area_ids: frozenset[int]


def load_scope(db: Session, principal: Principal) -> EventScope:
    tree = load_tree(db)
    return EventScope(agent_ids=frozenset(d.agent_id for d, _s, _a in visible_devices(db, principal)),
                      area_ids=frozenset(principal.areas_for(Action.VIEW, tree)))


def parse_event(chunk: str) -> dict[str, Any] | None:
    """The event in one ``data: {...}\\n\\n`` chunk; None for comments (keep-alives) and junk."""
    if not chunk.startswith("data: "):
        return None
    try:
        event = json.loads(chunk[len("data: "):].strip())
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def event_allowed(event: dict[str, Any], scope: EventScope,
                  announcement_area: Callable[[int], int | None]) -> bool:
    """Deny by default: only device-bound events of the user's devices and their areas' announcements."""
    agent_id = event.get("agent_id")
    if isinstance(agent_id, str):
        return agent_id in scope.agent_ids
    if event.get("type") == "announcement" and isinstance(event.get("id"), int):
        area_id = announcement_area(event["id"])
        return area_id is not None and area_id in scope.area_ids
    return False


async def scoped_stream(source: AsyncIterator[str], load: Callable[[], EventScope | None],
                        announcement_area: Callable[[int], int | None], *,
                        refresh_s: float = SCOPE_REFRESH_S,
                        clock: Callable[[], float] = time.monotonic) -> AsyncGenerator[str, None]:
    """Pass on only what the user may see; end when the session ends (the browser then gets a 401).

    The source is subscribed to before the first ``: connected`` comment goes out, so a page that
    re-reads the state when its EventSource opens misses nothing in between. ``load`` and
    ``announcement_area`` touch the database and run in a worker thread.
    """
    iterator = source.__aiter__()
    pending: asyncio.Future[str] | None = None
    try:
        scope = await asyncio.to_thread(load)
        if scope is None:
            return
        loaded_at = clock()
        pending = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0)  # let the source run up to its first wait: it is subscribed now
        yield ": connected\n\n"
        while True:
            try:
                chunk = await pending
            except StopAsyncIteration:
                return
            pending = None
            if clock() - loaded_at >= refresh_s:
                scope = await asyncio.to_thread(load)
                if scope is None:
                    return
                loaded_at = clock()
            event = parse_event(chunk)
            if event is None:
                if chunk.startswith(":"):
                    yield chunk
            else:
                agent_id = event.get("agent_id")
                if (isinstance(agent_id, str) and agent_id not in scope.agent_ids
                        and clock() - loaded_at >= UNKNOWN_AGENT_REFRESH_S):
                    scope = await asyncio.to_thread(load)  # perhaps a device registered since
                    if scope is None:
                        return
                    loaded_at = clock()
                if event.get("type") == "announcement":
                    allowed = await asyncio.to_thread(event_allowed, event, scope, announcement_area)
                else:
                    allowed = event_allowed(event, scope, announcement_area)
                if allowed:
                    yield chunk
            pending = asyncio.ensure_future(iterator.__anext__())
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        close = getattr(iterator, "aclose", None)  # unsubscribes from the live bus
        if close is not None:
            await close()


@router.get("/console/events", response_model=None)
def get_events(request: Request, runtime: RuntimeDep) -> Response:
    # No DbSession dependency here: it would stay open (holding a pooled connection) for as long as
    # the stream runs. Each check opens and closes its own short session instead.
    with runtime.db.session() as db:
        active = active_session(request, db, runtime)
    token = request.cookies.get(SESSION_COOKIE)
    if active is None or token is None:
        return JSONResponse({"detail": "Hãy đăng nhập trước"}, status_code=401)

    def load() -> EventScope | None:
        with runtime.db.session() as session:
            try:
                current = resolve_session(session, token, runtime.now())
            except Unauthorized:
                return None
            return load_scope(session, current.principal)

    def announcement_area(announcement_id: int) -> int | None:
        with runtime.db.session() as session:
            row = session.get(Announcement, announcement_id)
            return row.area_id if row is not None else None

    return StreamingResponse(scoped_stream(runtime.live.stream(), load, announcement_area),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
