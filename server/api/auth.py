"""Log in and out; who am I; change my password."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from server.accounts import change_password
from server.api.admin_schemas import LoginPublic, PasswordChange
from server.api.deps import CSRF_HEADER, SESSION_COOKIE, DbSession, RuntimeDep, bearer_token
from server.api.schemas import LoginRequest
from server.directory import ActiveSession, login, logout, resolve_session
from server.errors import Unauthorized
from server.security import same

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _token(request: Request) -> tuple[str, bool]:
    token = bearer_token(request)
    if token is not None:
        return token, False
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthorized("log in first")
    return cookie, True


def own_session(request: Request, runtime: RuntimeDep, db: DbSession) -> ActiveSession:
    """Like ``deps.get_principal`` (same token and CSRF rules) but also for a user who must change
    their password: these endpoints are the way out of that state."""
    token, from_cookie = _token(request)
    session = resolve_session(db, token, runtime.now(), allow_password_change_only=True)
    if from_cookie and request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not same(sent, session.csrf_token):
            raise Unauthorized("missing or wrong CSRF token")
    return session


OwnSession = Annotated[ActiveSession, Depends(own_session)]


@router.post("/login")
def post_login(body: LoginRequest, response: Response, db: DbSession, runtime: RuntimeDep) -> LoginPublic:
    session = login(db, username=body.username, password=body.password, now=runtime.now(),
                    lifetime=timedelta(hours=runtime.settings.session_hours))
    response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="strict",
                        secure=runtime.settings.environment == "production",
                        max_age=runtime.settings.session_hours * 3600)
    return LoginPublic(token=session.token, csrf_token=session.csrf_token, expires_at=session.expires_at,
                       username=session.principal.username, full_name=session.principal.full_name,
                       roles=sorted(session.principal.roles), must_change_password=session.must_change_password)


@router.post("/logout", status_code=204)
def post_logout(request: Request, response: Response, db: DbSession, session: OwnSession) -> None:
    token = bearer_token(request) or request.cookies.get(SESSION_COOKIE)
    if token:
        logout(db, token)
    response.delete_cookie(SESSION_COOKIE)


@router.get("/me")
def get_me(session: OwnSession) -> dict[str, object]:
    principal = session.principal
    return {"username": principal.username, "full_name": principal.full_name,
            "must_change_password": session.must_change_password,
            "grants": [{"role": str(g.role), "area_id": g.area_id} for g in principal.grants]}


@router.post("/password", status_code=204)
def post_password(body: PasswordChange, request: Request, db: DbSession, runtime: RuntimeDep,
                  session: OwnSession) -> None:
    """Change my own password (the current one is required); my other sessions end, this one stays."""
    token, _from_cookie = _token(request)
    change_password(db, session.principal, current=body.current_password, new=body.new_password,
                    now=runtime.now(), keep_token=token)
