"""The console's alerts page: open alerts first (critical first), filters, acknowledgement with a comment.

The page only reads; acknowledging goes through ``POST /api/v1/alerts/{id}/acknowledge`` from
``static/alerts.js`` with the CSRF header. On a live ``alert`` event the script re-reads this same page
(same filters) and swaps the table, so the wording of rules and figures lives in the template only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from server.alerts import RULES
from server.api.alerts import AlertFilter, AlertStatus, list_alerts
from server.api.deps import DbSession, RuntimeDep
from server.console.routes import _page_context, _render, _to_login, active_session
from server.directory import visible_areas, visible_devices
from server.errors import NotFound

router = APIRouter(include_in_schema=False)

STATUSES: tuple[AlertStatus, ...] = ("open", "resolved", "all")


@router.get("/console/alerts", response_model=None)
def get_alerts_page(request: Request, db: DbSession, runtime: RuntimeDep,
                    status: Annotated[str | None, Query(max_length=16)] = None,
                    unacknowledged: Annotated[str | None, Query(max_length=8)] = None,
                    area_code: Annotated[str | None, Query(max_length=32)] = None,
                    agent_id: Annotated[str | None, Query(max_length=64)] = None,
                    rule: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    chosen: AlertStatus = next((s for s in STATUSES if s == status), "open")
    wanted = AlertFilter(status=chosen, unacknowledged=unacknowledged in ("1", "true", "on"),
                         area_code=(area_code or "").strip() or None, agent_id=(agent_id or "").strip() or None,
                         rule=rule if rule in RULES else None)
    try:
        alerts = list_alerts(db, active.principal, wanted)
    except NotFound:
        # An area or cluster outside the user's areas looks exactly like one that does not exist.
        return _render(request, "refusal.html", {**_page_context(active), "status": 404}, runtime, status_code=404)
    return _render(request, "alerts.html", {
        **_page_context(active), "alerts": alerts, "filter": wanted, "rules": RULES, "statuses": STATUSES,
        "areas": visible_areas(db, active.principal),
        "devices": [d for d, _s, _a in visible_devices(db, active.principal)],
        "open_count": sum(1 for a in alerts if a.resolved_at is None),
    }, runtime)
