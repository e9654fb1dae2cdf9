"""User administration by area: list, create, disable/enable, reset the password, grant and revoke roles.

The rules (who sees and manages whom) are in ``server.accounts``.
"""

from __future__ import annotations

from fastapi import APIRouter, Path

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
from server.permissions import Role

router = APIRouter(prefix="/api/v1/users", tags=["users"])

_USERNAME = Path(min_length=1, max_length=64)


def user_public(view: UserView) -> UserPublic:
    u = view.user
    return UserPublic(username=u.username, full_name=u.full_name, is_active=u.is_active, locked=view.locked,
                      must_change_password=u.must_change_password, created_at=u.created_at,
                      password_changed_at=u.password_changed_at, manageable=view.manageable,
                      grants=[GrantPublic(role=role, area_code=a.code, area_name=a.name) for role, a in view.grants])


@router.get("")
def list_users(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> list[UserPublic]:
    return [user_public(v) for v in list_user_views(db, principal, runtime.now())]


@router.post("", status_code=201)
def post_user(body: UserCreate, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> UserCreated:
    user, password = create_account(db, principal, username=body.username, full_name=body.full_name,
                                    grants=[(g.role, g.area_code) for g in body.grants], now=runtime.now())
    view = view_of(db, principal, user.username, runtime.now())
    return UserCreated(**user_public(view).model_dump(), one_time_password=password)


@router.get("/{username}")
def get_user(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
             username: str = _USERNAME) -> UserPublic:
    return user_public(view_of(db, principal, username, runtime.now()))


@router.post("/{username}/disable")
def post_disable(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                 username: str = _USERNAME) -> UserPublic:
    set_active(db, principal, username, active=False)
    return user_public(view_of(db, principal, username, runtime.now()))


@router.post("/{username}/enable")
def post_enable(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                username: str = _USERNAME) -> UserPublic:
    set_active(db, principal, username, active=True)
    return user_public(view_of(db, principal, username, runtime.now()))


@router.post("/{username}/reset-password")
def post_reset_password(db: DbSession, principal: CurrentPrincipal, username: str = _USERNAME) -> PasswordReset:
    return PasswordReset(username=username, one_time_password=reset_password(db, principal, username))


@router.post("/{username}/grants", status_code=201)
def post_grant(body: GrantCreate, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
               username: str = _USERNAME) -> UserPublic:
    grant_role(db, principal, username, body.role, body.area_code)
    return user_public(view_of(db, principal, username, runtime.now()))


@router.delete("/{username}/grants/{role}/{area_code}")
def delete_grant(role: Role, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                 username: str = _USERNAME, area_code: str = Path(min_length=1, max_length=32)) -> UserPublic:
    revoke_role(db, principal, username, role, area_code)
    return user_public(view_of(db, principal, username, runtime.now()))


__all__ = ["USERNAME_PATTERN", "router", "user_public"]
