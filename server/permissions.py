"""Who may do what where: roles granted on an area subtree.

A grant of role R on area A covers A and every area below it. ``admin`` implies every other role.
Checks return plain booleans; the API turns a refusal into 403 (or 404 where existence must not leak).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schedules import AreaId, AreaTree


class Role(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    APPROVER = "approver"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Action(StrEnum):
    VIEW = "view"
    EDIT_CONTENT = "edit_content"
    APPROVE = "approve"
    SCHEDULE = "schedule"
    OPERATE = "operate"
    MANAGE = "manage"


ALLOWED: dict[Action, frozenset[Role]] = {
    Action.VIEW: frozenset(Role),
    Action.EDIT_CONTENT: frozenset({Role.ADMIN, Role.EDITOR}),
    Action.APPROVE: frozenset({Role.ADMIN, Role.APPROVER}),
    Action.SCHEDULE: frozenset({Role.ADMIN, Role.EDITOR}),
    Action.OPERATE: frozenset({Role.ADMIN, Role.OPERATOR}),
    Action.MANAGE: frozenset({Role.ADMIN}),
}


@dataclass(frozen=True)
class Grant:
    role: Role
    area_id: AreaId


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    full_name: str
    grants: tuple[Grant, ...]

    def can(self, action: Action, area_id: AreaId, tree: AreaTree) -> bool:
        if area_id not in tree:
            return False
        lineage = set(tree.ancestors(area_id))
        return any(g.role in ALLOWED[action] and g.area_id in lineage for g in self.grants)

    def areas_for(self, action: Action, tree: AreaTree) -> set[AreaId]:
        """Every area where ``action`` is allowed."""
        found: set[AreaId] = set()
        for grant in self.grants:
            if grant.role in ALLOWED[action] and grant.area_id in tree:
                found |= tree.subtree(grant.area_id)
        return found

    @property
    def roles(self) -> set[Role]:
        return {g.role for g in self.grants}
