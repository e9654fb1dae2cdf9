"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.directory import resolve_session
from server.errors import Unauthorized
from server.permissions import Principal
from server.runtime import Runtime
from server.security import same

SESSION_COOKIE = "loa_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_db(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.db.session() as session:
        yield session


# scope="function": commit before the response leaves, so a client never sees a success (a new
# session, a stored announcement) that is not yet in the database.
DbSession = Annotated[Session, Depends(get_db, scope="function")]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def get_principal(request: Request, runtime: RuntimeDep, db: DbSession) -> Principal:
    """A user, from a bearer token (API clients) or the session cookie (console, CSRF-checked)."""
    token = bearer_token(request)
    from_cookie = token is None
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("log in first")
    session = resolve_session(db, token, runtime.now())
    if from_cookie and request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not same(sent, session.csrf_token):
            raise Unauthorized("missing or wrong CSRF token")
    return session.principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
