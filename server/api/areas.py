"""The administrative tree."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from server.api.deps import CurrentPrincipal, DbSession
from server.api.schemas import AreaCreate, AreaPublic
from server.content import set_jingles
from server.directory import area_by_code, create_area, load_tree, require, visible_areas
from server.errors import Forbidden
from server.permissions import Action

router = APIRouter(prefix="/api/v1/areas", tags=["areas"])


@router.get("")
def list_areas(db: DbSession, principal: CurrentPrincipal) -> list[AreaPublic]:
    return [AreaPublic.model_validate(a) for a in visible_areas(db, principal)]


class JinglesUpdate(BaseModel):
    """Approved announcements whose audio becomes the area's chime, intro and outro (null clears one)."""

    chime_announcement_id: int | None = None
    intro_announcement_id: int | None = None
    outro_announcement_id: int | None = None


@router.put("/{area_code}/jingles")
def put_jingles(area_code: str, body: JinglesUpdate, db: DbSession,
                principal: CurrentPrincipal) -> dict[str, str | None]:
    choices = {name.removesuffix("_announcement_id"): value
               for name, value in body.model_dump(exclude_unset=True).items()}
    area = set_jingles(db, principal, area_code, choices)
    return {"chime_sha256": area.chime_sha256, "intro_sha256": area.intro_sha256, "outro_sha256": area.outro_sha256}


@router.post("", status_code=201)
def post_area(body: AreaCreate, db: DbSession, principal: CurrentPrincipal) -> AreaPublic:
    if body.parent_code is None:
        raise Forbidden("only the installation can create root areas")
    parent = area_by_code(db, body.parent_code)
    require(principal, Action.MANAGE, parent, load_tree(db), "adding areas here needs the admin role")
    area = create_area(db, code=body.code, name=body.name, kind=body.kind, parent_code=body.parent_code)
    return AreaPublic.model_validate(area)
