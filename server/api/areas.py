"""The administrative tree."""

from __future__ import annotations

from fastapi import APIRouter

from server.api.deps import CurrentPrincipal, DbSession
from server.api.schemas import AreaCreate, AreaPublic
from server.directory import area_by_code, create_area, load_tree, require, visible_areas
from server.errors import Forbidden
from server.permissions import Action

router = APIRouter(prefix="/api/v1/areas", tags=["areas"])


@router.get("")
def list_areas(db: DbSession, principal: CurrentPrincipal) -> list[AreaPublic]:
    return [AreaPublic.model_validate(a) for a in visible_areas(db, principal)]


@router.post("", status_code=201)
def post_area(body: AreaCreate, db: DbSession, principal: CurrentPrincipal) -> AreaPublic:
    if body.parent_code is None:
        raise Forbidden("only the installation can create root areas")
    parent = area_by_code(db, body.parent_code)
    require(principal, Action.MANAGE, parent, load_tree(db), "adding areas here needs the admin role")
    area = create_area(db, code=body.code, name=body.name, kind=body.kind, parent_code=body.parent_code)
    return AreaPublic.model_validate(area)
