"""Areas, users, login sessions and devices: who and what exists, and who may see it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from schedules import Area as AreaValue
from schedules import AreaId, AreaTree
from server import audit
from server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from server.models import Area, AreaAlias, Device, DeviceStatus, LoginSession, RoleGrant, User
from server.permissions import Action, Grant, Principal, Role
from server.security import hash_password, mosquitto_password_hash, new_token, token_digest, verify_password


def load_tree(db: Session) -> AreaTree:
    rows = db.scalars(select(Area)).all()
    return AreaTree(AreaValue(id=AreaId(a.id), parent_id=AreaId(a.parent_id) if a.parent_id else None,
                              code=a.code, name=a.name, kind=a.kind) for a in rows)


def require(principal: Principal, action: Action, area: Area, tree: AreaTree, refusal: str) -> None:
    """Raise NotFound when the user may not even see the area (nothing leaks), Forbidden otherwise."""
    if not principal.can(Action.VIEW, AreaId(area.id), tree):
        raise NotFound(f"no area {area.code}")
    if not principal.can(action, AreaId(area.id), tree):
        raise Forbidden(refusal)


# --- areas ------------------------------------------------------------------------------------------

def create_area(db: Session, *, code: str, name: str, kind: str, parent_code: str | None) -> Area:
    parent_id = None
    if parent_code is not None:
        parent = db.scalar(select(Area).where(Area.code == parent_code))
        if parent is None:
            raise NotFound(f"no area with code {parent_code}")
        parent_id = parent.id
    if db.scalar(select(Area).where(Area.code == code)) is not None:
        raise Conflict(f"an area with code {code} already exists")
    area = Area(code=code, name=name, kind=kind, parent_id=parent_id)
    db.add(area)
    db.flush()
    return area


def area_by_code(db: Session, code: str) -> Area:
    """The area with this code, or the commune a former (merged) commune code now belongs to."""
    area = db.scalar(select(Area).where(Area.code == code))
    if area is None:
        area = db.scalar(select(Area).join(AreaAlias, AreaAlias.area_id == Area.id).where(AreaAlias.code == code))
    if area is None:
        raise NotFound(f"no area with code {code}")
    return area


def visible_areas(db: Session, principal: Principal) -> list[Area]:
    tree = load_tree(db)
    ids = principal.areas_for(Action.VIEW, tree)
    return list(db.scalars(select(Area).where(Area.id.in_(ids)).order_by(Area.code)).all())


# --- users and sessions ------------------------------------------------------------------------------

def create_user(db: Session, *, username: str, password: str, full_name: str,
                grants: list[tuple[Role, int]]) -> User:
    if db.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"user {username} already exists")
    if len(password) < 8:
        raise Invalid("password must have at least 8 characters")
    user = User(username=username, full_name=full_name, password_hash=hash_password(password))
    user.grants = [RoleGrant(role=str(role), area_id=area_id) for role, area_id in grants]
    db.add(user)
    db.flush()
    return user


def principal_of(user: User) -> Principal:
    return Principal(user_id=user.id, username=user.username, full_name=user.full_name,
                     grants=tuple(Grant(role=Role(g.role), area_id=AreaId(g.area_id)) for g in user.grants))


@dataclass(frozen=True)
class NewSession:
    token: str
    csrf_token: str
    expires_at: datetime
    principal: Principal
    must_change_password: bool


LOCKOUT_THRESHOLD = 5
"""Consecutive wrong passwords before the account is locked for a while."""
LOCKOUT_FIRST = timedelta(minutes=1)
LOCKOUT_MAX = timedelta(hours=1)
LOGIN_REFUSED = ("Sai tên đăng nhập hoặc mật khẩu, hoặc tài khoản đang tạm khóa vì nhập sai nhiều lần "
                 "(hãy thử lại sau ít phút).")
"""One message for every refusal (unknown user, wrong password, locked, disabled): nothing leaks."""


def lockout_for(failed_logins: int) -> timedelta | None:
    """How long the account locks after this many consecutive failures: 1 min at the 5th, doubling, ≤ 1 h."""
    if failed_logins < LOCKOUT_THRESHOLD:
        return None
    return min(LOCKOUT_FIRST * 2 ** min(failed_logins - LOCKOUT_THRESHOLD, 16), LOCKOUT_MAX)


def login(db: Session, *, username: str, password: str, now: datetime, lifetime: timedelta) -> NewSession:
    """Open a session, or raise Unauthorized with ``LOGIN_REFUSED``.

    A failure (its count and its audit event: the name typed, never the password) is committed before
    the error is raised (the caller's unit of work rolls back on errors, and both must survive that).
    While an account is locked its password is not even checked, and failures do not extend the lock.
    """
    user = db.scalar(select(User).where(User.username == username))
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    # Verify against a dummy hash when the user is unknown or locked so timing reveals nothing.
    candidate = user.password_hash if user is not None and not locked else _DUMMY_HASH
    valid = verify_password(candidate, password) and user is not None and not locked
    if user is None or locked or not valid or not user.is_active:
        action, details = "auth.login_failed", {}
        reason = "unknown_user" if user is None else "locked" if locked else "wrong_password" if not valid \
            else "disabled"
        if user is not None and not locked and not valid:
            user.failed_logins += 1
            details["failed_logins"] = user.failed_logins
            lock = lockout_for(user.failed_logins)
            if lock is not None:
                user.locked_until = now + lock
                action, details["locked_minutes"] = "auth.lockout", int(lock.total_seconds() // 60)
        audit.record(db, user, action, target=f"user:{username[:64]}", username=username[:64],
                     details={"reason": reason, **details}, outcome="refused")
        db.commit()
        raise Unauthorized(LOGIN_REFUSED)
    user.failed_logins = 0
    user.locked_until = None
    audit.record(db, user, "auth.login", target=f"user:{user.username}")  # committed with the session
    token, csrf = new_token(), new_token()
    db.execute(delete(LoginSession).where(LoginSession.expires_at < now))
    db.add(LoginSession(token_hash=token_digest(token), user_id=user.id, csrf_token=csrf,
                        created_at=now, expires_at=now + lifetime))
    return NewSession(token=token, csrf_token=csrf, expires_at=now + lifetime, principal=principal_of(user),
                      must_change_password=user.must_change_password)


_DUMMY_HASH = hash_password("not-a-real-password-just-for-timing")


class PasswordChangeRequired(Forbidden):
    """The session is only good for changing the password (after an admin reset)."""


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    csrf_token: str
    must_change_password: bool = False


def resolve_session(db: Session, token: str, now: datetime, *, allow_password_change_only: bool = False
                    ) -> ActiveSession:
    """The session behind a token. A user who must change their password gets PasswordChangeRequired
    unless the caller is one of the few places that let them do it (``allow_password_change_only``)."""
    row = db.get(LoginSession, token_digest(token))
    if row is None or row.expires_at < now:
        raise Unauthorized("session expired; please log in again")
    user = db.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("account disabled")
    if user.must_change_password and not allow_password_change_only:
        raise PasswordChangeRequired("Bạn cần đổi mật khẩu trước khi tiếp tục.")
    return ActiveSession(principal=principal_of(user), csrf_token=row.csrf_token,
                         must_change_password=user.must_change_password)


def logout(db: Session, token: str) -> None:
    session = db.scalar(select(LoginSession).where(LoginSession.token_hash == token_digest(token)))
    if session is None:
        return
    user = db.get(User, session.user_id)
    if user is not None:
        audit.record(db, user, "auth.logout", target=f"user:{user.username}")
    db.delete(session)


# --- devices ----------------------------------------------------------------------------------------

def register_device(db: Session, principal: Principal | None, *, agent_id: str, name: str, area_code: str,
                    latitude: float | None = None, longitude: float | None = None) -> tuple[Device, str]:
    """Create a device and return it with its secret (shown once; only its digest is stored)."""
    area = area_by_code(db, area_code)
    if principal is not None:
        require(principal, Action.MANAGE, area, load_tree(db), "registering devices needs the admin role here")
    if db.scalar(select(Device).where(Device.agent_id == agent_id)) is not None:
        raise Conflict(f"device {agent_id} is already registered")
    token = new_token()
    device = Device(agent_id=agent_id, name=name, area_id=area.id, token_hash=token_digest(token),
                    broker_password_hash=mosquitto_password_hash(token), latitude=latitude, longitude=longitude)
    db.add(device)
    db.flush()
    db.add(DeviceStatus(device_id=device.id))
    return device, token


def device_by_token(db: Session, token: str) -> Device | None:
    return db.scalar(select(Device).where(Device.token_hash == token_digest(token)))


def visible_devices(db: Session, principal: Principal) -> list[tuple[Device, DeviceStatus | None, Area]]:
    tree = load_tree(db)
    ids = principal.areas_for(Action.VIEW, tree)
    rows = db.execute(
        select(Device, DeviceStatus, Area)
        .join(Area, Area.id == Device.area_id)
        .outerjoin(DeviceStatus, DeviceStatus.device_id == Device.id)
        .where(Device.area_id.in_(ids))
        .order_by(Area.code, Device.agent_id)
    ).all()
    return [(d, s, a) for d, s, a in rows]


def get_visible_device(db: Session, principal: Principal, agent_id: str) -> Device:
    device = db.scalar(select(Device).where(Device.agent_id == agent_id))
    # A device outside the user's areas is reported as absent, so its existence does not leak.
    if device is None or not principal.can(Action.VIEW, AreaId(device.area_id), load_tree(db)):
        raise NotFound(f"no device {agent_id}")
    return device
