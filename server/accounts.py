"""User accounts: the password rule, password change, admin reset, and user administration by area.

Who may administer whom follows the area tree:

- an admin *sees* a user who holds at least one role on an area inside one of the admin's subtrees
  (anyone else is reported as absent: 404, their existence does not leak);
- an admin *manages* a user (disable, enable, reset the password) only when every one of the user's
  roles lies inside the admin's subtrees — a commune admin cannot reset a district editor;
- an admin grants and revokes roles only on areas inside their subtrees (a commune admin cannot grant
  on the province).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from schedules import AreaId, AreaTree
from server import audit
from server.directory import create_user, load_tree
from server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from server.models import Area, LoginSession, RoleGrant, User
from server.permissions import Action, Principal, Role
from server.security import hash_password, token_digest, verify_password

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 256
PASSWORD_RULE = (f"Mật khẩu mới phải dài ít nhất {PASSWORD_MIN_LENGTH} ký tự, có cả chữ và chữ số (hoặc ký hiệu), "
                 "và không được trùng tên đăng nhập.")
_COMMON = frozenset({"1234567890", "0123456789", "matkhau123", "password123", "admin12345", "qwerty1234",
                     "abc1234567", "12345678910", "loa1234567", "matkhau@123", "password@123"})
_ONE_TIME_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/l/I: a one-time password is read out over the phone or copied by hand."""
ONE_TIME_LENGTH = 12


def password_problem(password: str, username: str) -> str | None:
    """Why ``password`` is not acceptable as a new password, or None."""
    if len(password) < PASSWORD_MIN_LENGTH or len(password) > PASSWORD_MAX_LENGTH:
        return PASSWORD_RULE
    has_letter = any(c.isalpha() for c in password)
    has_other = any(not c.isalpha() and not c.isspace() for c in password)
    if not (has_letter and has_other):
        return PASSWORD_RULE
    if password.casefold() == username.casefold() or password.casefold() in _COMMON:
        return "Mật khẩu này quá dễ đoán. " + PASSWORD_RULE
    if len(set(password)) < 4:
        return "Mật khẩu này quá dễ đoán. " + PASSWORD_RULE
    return None


def one_time_password() -> str:
    """A random password the user must change at the next log-in (shown once to the admin)."""
    while True:
        candidate = "".join(secrets.choice(_ONE_TIME_ALPHABET) for _ in range(ONE_TIME_LENGTH))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


def _end_sessions(db: Session, user_id: int, *, keep_token: str | None = None) -> None:
    query = delete(LoginSession).where(LoginSession.user_id == user_id)
    if keep_token is not None:
        query = query.where(LoginSession.token_hash != token_digest(keep_token))
    db.execute(query)


def change_password(db: Session, principal: Principal, *, current: str, new: str, now: datetime,
                    keep_token: str | None) -> None:
    """The user changes their own password; their other sessions end."""
    user = db.get(User, principal.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("account disabled")
    if not verify_password(user.password_hash, current):
        raise Invalid("Mật khẩu hiện tại không đúng.")
    if new == current:
        raise Invalid("Mật khẩu mới phải khác mật khẩu hiện tại.")
    problem = password_problem(new, user.username)
    if problem is not None:
        raise Invalid(problem)
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    user.must_change_password = False
    user.failed_logins = 0
    user.locked_until = None
    _end_sessions(db, user.id, keep_token=keep_token)
    audit.record(db, principal, "auth.password_change", target=f"user:{user.username}")


# --- scope --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdminScope:
    """The areas where a principal holds the admin role."""

    area_ids: frozenset[AreaId]
    root: bool = False
    """The admin holds the role on a whole tree (a root area)."""

    def sees(self, user: User) -> bool:
        return any(AreaId(g.area_id) in self.area_ids for g in user.grants)

    def manages(self, user: User) -> bool:
        # A user without any role is only manageable by an admin of a whole tree (a root area).
        return all(AreaId(g.area_id) in self.area_ids for g in user.grants) and (bool(user.grants) or self.root)


def admin_scope(db: Session, principal: Principal, tree: AreaTree | None = None) -> AdminScope:
    tree = tree or load_tree(db)
    ids = principal.areas_for(Action.MANAGE, tree)
    roots = {a.id for a in db.scalars(select(Area).where(Area.parent_id.is_(None)))}
    if not ids:
        raise Forbidden("Cần quyền quản trị để quản lý người dùng.")
    return AdminScope(area_ids=frozenset(ids), root=bool(roots & set(ids)))


def _visible_user(db: Session, scope: AdminScope, username: str) -> User:
    user = db.scalar(select(User).where(User.username == username))
    if user is None or not (scope.sees(user) or (scope.root and not user.grants)):
        raise NotFound(f"Không tìm thấy người dùng {username}.")
    return user


def _managed_user(db: Session, principal: Principal, scope: AdminScope, username: str) -> User:
    user = _visible_user(db, scope, username)
    if not scope.manages(user):
        raise Forbidden("Người dùng này có quyền ở địa bàn ngoài phạm vi quản trị của bạn.")
    if user.id == principal.user_id:
        raise Conflict("Không thể tự thực hiện thao tác này với tài khoản của chính mình.")
    return user


def _area_in_scope(db: Session, scope: AdminScope, principal: Principal, area_code: str) -> Area:
    area = db.scalar(select(Area).where(Area.code == area_code))
    if area is None or not principal.can(Action.VIEW, AreaId(area.id), load_tree(db)):
        raise NotFound(f"Không tìm thấy địa bàn {area_code}.")
    if AreaId(area.id) not in scope.area_ids:
        raise Forbidden("Chỉ được cấp quyền trong địa bàn bạn quản trị.")
    return area


# --- administration -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UserView:
    user: User
    grants: list[tuple[str, Area]]
    manageable: bool
    locked: bool


def list_users(db: Session, principal: Principal, now: datetime) -> list[UserView]:
    scope = admin_scope(db, principal)
    areas = {a.id: a for a in db.scalars(select(Area))}
    users = db.scalars(select(User).order_by(User.username)).all()
    return [UserView(user=u, grants=sorted(((g.role, areas[g.area_id]) for g in u.grants),
                                           key=lambda pair: (pair[1].code, pair[0])),
                     manageable=scope.manages(u) and u.id != principal.user_id,
                     locked=u.locked_until is not None and u.locked_until > now)
            for u in users if scope.sees(u) or (scope.root and not u.grants)]


def view_of(db: Session, principal: Principal, username: str, now: datetime) -> UserView:
    found = [v for v in list_users(db, principal, now) if v.user.username == username]
    if not found:
        raise NotFound(f"Không tìm thấy người dùng {username}.")
    return found[0]


def create_account(db: Session, principal: Principal, *, username: str, full_name: str,
                   grants: list[tuple[Role, str]], now: datetime) -> tuple[User, str]:
    """A new user with a one-time password (returned, shown once); they must change it at first log-in."""
    scope = admin_scope(db, principal)
    if not grants:
        raise Invalid("Hãy chọn ít nhất một vai trò trên một địa bàn.")
    resolved = [(role, _area_in_scope(db, scope, principal, code).id) for role, code in grants]
    if db.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"Tên đăng nhập {username} đã có người dùng.")
    password = one_time_password()
    user = create_user(db, username=username, password=password, full_name=full_name,
                       grants=list(dict.fromkeys(resolved)))
    user.must_change_password = True
    user.created_at = now
    return user, password


def set_active(db: Session, principal: Principal, username: str, *, active: bool) -> User:
    scope = admin_scope(db, principal)
    user = _managed_user(db, principal, scope, username)
    user.is_active = active
    if not active:
        _end_sessions(db, user.id)
    else:
        user.failed_logins = 0
        user.locked_until = None
    return user


def reset_password(db: Session, principal: Principal, username: str) -> str:
    """A one-time password for ``username`` (their sessions end; they must change it at the next log-in)."""
    scope = admin_scope(db, principal)
    user = _managed_user(db, principal, scope, username)
    password = one_time_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    _end_sessions(db, user.id)
    return password


def grant_role(db: Session, principal: Principal, username: str, role: Role, area_code: str) -> User:
    scope = admin_scope(db, principal)
    user = _visible_user(db, scope, username)
    area = _area_in_scope(db, scope, principal, area_code)
    if any(g.role == str(role) and g.area_id == area.id for g in user.grants):
        raise Conflict("Người dùng đã có vai trò này trên địa bàn này.")
    user.grants.append(RoleGrant(role=str(role), area_id=area.id))
    db.flush()
    return user


def revoke_role(db: Session, principal: Principal, username: str, role: Role, area_code: str) -> User:
    scope = admin_scope(db, principal)
    user = _visible_user(db, scope, username)
    area = _area_in_scope(db, scope, principal, area_code)
    grant = next((g for g in user.grants if g.role == str(role) and g.area_id == area.id), None)
    if grant is None:
        raise NotFound("Người dùng không có vai trò này trên địa bàn này.")
    if len(user.grants) == 1:
        raise Conflict("Không thể thu hồi vai trò cuối cùng; hãy khóa tài khoản nếu không dùng nữa.")
    user.grants.remove(grant)
    db.flush()
    return user


def areas_for_admin(db: Session, principal: Principal) -> list[Area]:
    """The areas where ``principal`` may grant roles, in code order (empty for non-admins)."""
    ids = principal.areas_for(Action.MANAGE, load_tree(db))
    return list(db.scalars(select(Area).where(Area.id.in_(ids)).order_by(Area.code)))


__all__ = ["PASSWORD_RULE", "AdminScope", "UserView", "admin_scope", "areas_for_admin",
           "change_password", "create_account", "grant_role", "list_users", "one_time_password",
           "password_problem", "reset_password", "revoke_role", "set_active", "view_of"]
