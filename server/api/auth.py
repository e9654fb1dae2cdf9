"""Log in and out; who am I."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from server.api.deps import SESSION_COOKIE, CurrentPrincipal, DbSession, RuntimeDep, bearer_token
from server.api.schemas import LoginPublic, LoginRequest
from server.directory import login, logout

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/login")
def post_login(body: LoginRequest, response: Response, db: DbSession, runtime: RuntimeDep) -> LoginPublic:
    session = login(db, username=body.username, password=body.password, now=runtime.now(),
                    lifetime=timedelta(hours=runtime.settings.session_hours))
    response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="strict",
                        secure=runtime.settings.environment == "production",
                        max_age=runtime.settings.session_hours * 3600)
    return LoginPublic(token=session.token, csrf_token=session.csrf_token, expires_at=session.expires_at,
                       username=session.principal.username, full_name=session.principal.full_name,
                       roles=sorted(session.principal.roles))


@router.post("/logout", status_code=204)
def post_logout(request: Request, response: Response, db: DbSession, principal: CurrentPrincipal) -> None:
    token = bearer_token(request) or request.cookies.get(SESSION_COOKIE)
    if token:
        logout(db, token)
    response.delete_cookie(SESSION_COOKIE)


@router.get("/me")
def get_me(principal: CurrentPrincipal) -> dict[str, object]:
    return {"username": principal.username, "full_name": principal.full_name,
            "grants": [{"role": str(g.role), "area_id": g.area_id} for g in principal.grants]}
