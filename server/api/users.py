"""User administration by area: list, create, disable/enable, reset the password, grant and revoke roles.

The rules (who sees and manages whom) are in ``server.accounts``.
"""

from __future__ import annotations

from fastapi import APIRouter, Path
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId
from server import audit
from server.accounts import (
    UserView,
    create_account,
    grant_role,
    reset_password,
    revoke_role,
    set_active,
    view_of,
)
from server.accounts import list_users as list_user_views
from server.api.admin_schemas import (
    USERNAME_PATTERN,
    GrantCreate,
    GrantPublic,
    PasswordReset,
    UserCreate,
    UserCreated,
    UserPublic,
)
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.broadcasts import common_ancestor
from server.directory import area_by_code, load_tree
from server.models import User
from server.permissions import Principal, Role

router = APIRouter(prefix="/api/v1/users", tags=["users"])

_USERNAME = Path(min_length=1, max_length=64)


def user_public(view: UserView) -> UserPublic:
    u = view.user
    return UserPublic(username=u.username, full_name=u.full_name, is_active=u.is_active, locked=view.locked,
                      must_change_password=u.must_change_password, created_at=u.created_at,
                      password_changed_at=u.password_changed_at, manageable=view.manageable,
                      grants=[GrantPublic(role=role, area_code=a.code, area_name=a.name) for role, a in view.grants])


def _record(db: Session, principal: Principal, action: str, user: User, *, area_id: int | None = None,
            **details: object) -> None:
    """An event about ``user``; it belongs to the lowest area holding all their roles (so the admins who
    manage them see it), unless the action concerns one area (a grant)."""
    if area_id is None and user.grants:
        area_id = int(common_ancestor(load_tree(db), [AreaId(g.area_id) for g in user.grants]))
    audit.record(db, principal, action, target=f"user:{user.username}", area_id=area_id, details=details)


@router.get("")
def list_users(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> list[UserPublic]:
    return [user_public(v) for v in list_user_views(db, principal, runtime.now())]


@router.post("", status_code=201)
def post_user(body: UserCreate, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> UserCreated:
    user, password = create_account(db, principal, username=body.username, full_name=body.full_name,
                                    grants=[(g.role, g.area_code) for g in body.grants], now=runtime.now())
    _record(db, principal, "user.create", user, full_name=user.full_name,
            grants=[{"role": str(g.role), "area_code": g.area_code} for g in body.grants])
    view = view_of(db, principal, user.username, runtime.now())
    return UserCreated(**user_public(view).model_dump(), one_time_password=password)


@router.get("/{username}")
def get_user(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
             username: str = _USERNAME) -> UserPublic:
    return user_public(view_of(db, principal, username, runtime.now()))


@router.post("/{username}/disable")
def post_disable(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                 username: str = _USERNAME) -> UserPublic:
    _record(db, principal, "user.disable", set_active(db, principal, username, active=False))
    return user_public(view_of(db, principal, username, runtime.now()))


@router.post("/{username}/enable")
def post_enable(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                username: str = _USERNAME) -> UserPublic:
    _record(db, principal, "user.enable", set_active(db, principal, username, active=True))
    return user_public(view_of(db, principal, username, runtime.now()))


@router.post("/{username}/reset-password")
def post_reset_password(db: DbSession, principal: CurrentPrincipal, username: str = _USERNAME) -> PasswordReset:
    password = reset_password(db, principal, username)
    _record(db, principal, "user.reset_password", db.scalars(select(User).where(User.username == username)).one())
    return PasswordReset(username=username, one_time_password=password)


@router.post("/{username}/grants", status_code=201)
def post_grant(body: GrantCreate, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
               username: str = _USERNAME) -> UserPublic:
    user = grant_role(db, principal, username, body.role, body.area_code)
    _record(db, principal, "user.grant", user, area_id=area_by_code(db, body.area_code).id, role=str(body.role),
            area_code=body.area_code)
    return user_public(view_of(db, principal, username, runtime.now()))


@router.delete("/{username}/grants/{role}/{area_code}")
def delete_grant(role: Role, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                 username: str = _USERNAME, area_code: str = Path(min_length=1, max_length=32)) -> UserPublic:
    user = revoke_role(db, principal, username, role, area_code)
    _record(db, principal, "user.revoke", user, area_id=area_by_code(db, area_code).id, role=str(role),
            area_code=area_code)
    return user_public(view_of(db, principal, username, runtime.now()))


__all__ = ["USERNAME_PATTERN", "router", "user_public"]
