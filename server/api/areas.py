"""The administrative tree: list, add below an area, rename, place on the map, former codes (aliases).

Every change needs the admin role (``Action.MANAGE``) on the area concerned, which covers its subtree
only: a commune's admin adds villages to that commune and never touches a neighbour (404 when the
area is not even visible, 403 when it is visible but not theirs to manage).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId, AreaTree
from server import audit
from server.api.deps import CurrentPrincipal, DbSession
from server.api.schemas import AreaPublic
from server.content import set_jingles
from server.coordinates import Latitude, Longitude, both_or_neither
from server.directory import area_by_code, create_area, load_tree, require, visible_areas
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.models import Area, AreaAlias
from server.permissions import Action, Principal

router = APIRouter(prefix="/api/v1/areas", tags=["areas"])

AreaKind = Literal["province", "district", "commune", "village", "group"]
KIND_DEPTH: dict[str, int] = {"province": 0, "district": 1, "commune": 2, "village": 3, "group": 4}
"""A child is always of a lower level than its parent (a province may hold communes directly since 2025)."""
CODE_PATTERN = r"^[A-Za-z0-9_.-]+$"


def _clean_name(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("must not be blank")
    return cleaned


class AreaIn(BaseModel):
    """A new area below ``parent_code``; without ``code`` the server numbers it (``<parent>-01`` …)."""

    model_config = ConfigDict(extra="forbid")
    code: str | None = Field(default=None, min_length=1, max_length=32, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: AreaKind
    parent_code: str | None = Field(default=None, max_length=32)
    latitude: Latitude = None
    longitude: Longitude = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _clean_name(value)

    @model_validator(mode="after")
    def _point(self) -> AreaIn:
        both_or_neither(self.latitude, self.longitude)
        return self


class AreaUpdate(BaseModel):
    """Only the fields sent change; send ``latitude`` and ``longitude`` together (both null clears the point)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    latitude: Latitude = None
    longitude: Longitude = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _clean_name(value)

    @model_validator(mode="after")
    def _point(self) -> AreaUpdate:
        sent = {"latitude", "longitude"} & self.model_fields_set
        if len(sent) == 1:
            raise ValueError("send latitude and longitude together")
        both_or_neither(self.latitude, self.longitude)
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name: must not be null")
        return self


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=32, pattern=CODE_PATTERN)
    note: str = Field(default="", max_length=200)


class AliasPublic(BaseModel):
    code: str
    note: str


class AreaDetail(BaseModel):
    id: int
    parent_id: int | None
    parent_code: str | None
    code: str
    name: str
    kind: str
    latitude: float | None
    longitude: float | None
    aliases: list[AliasPublic]


def area_detail(db: Session, area: Area) -> AreaDetail:
    parent = db.get(Area, area.parent_id) if area.parent_id is not None else None
    aliases = db.scalars(select(AreaAlias).where(AreaAlias.area_id == area.id).order_by(AreaAlias.code)).all()
    return AreaDetail(id=area.id, parent_id=area.parent_id, parent_code=parent.code if parent else None,
                      code=area.code, name=area.name, kind=area.kind, latitude=area.latitude,
                      longitude=area.longitude, aliases=[AliasPublic(code=a.code, note=a.note) for a in aliases])


def managed_area(db: Session, principal: Principal, code: str, refusal: str) -> tuple[Area, AreaTree]:
    area = area_by_code(db, code)
    tree = load_tree(db)
    require(principal, Action.MANAGE, area, tree, refusal)
    return area, tree


def _code_taken(db: Session, code: str) -> bool:
    return (db.scalar(select(Area.id).where(Area.code == code)) is not None
            or db.get(AreaAlias, code) is not None)


def _next_child_code(db: Session, parent: Area) -> str:
    siblings = db.scalars(select(Area.code).where(Area.parent_id == parent.id)).all()
    number = len(siblings) + 1
    while True:
        code = f"{parent.code}-{number:02d}"
        if len(code) > 32:
            raise Invalid(f"cannot number a child of {parent.code} (code too long): give a code")
        if not _code_taken(db, code):
            return code
        number += 1


@router.get("")
def list_areas(db: DbSession, principal: CurrentPrincipal) -> list[AreaPublic]:
    return [AreaPublic.model_validate(a) for a in visible_areas(db, principal)]


@router.get("/{area_code}")
def get_area(area_code: str, db: DbSession, principal: CurrentPrincipal) -> AreaDetail:
    area = area_by_code(db, area_code)
    if not principal.can(Action.VIEW, AreaId(area.id), load_tree(db)):
        raise NotFound(f"no area {area_code}")
    return area_detail(db, area)


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
def post_area(body: AreaIn, db: DbSession, principal: CurrentPrincipal) -> AreaDetail:
    if body.parent_code is None:
        raise Forbidden("only the installation can create root areas")
    parent, _ = managed_area(db, principal, body.parent_code, "adding areas here needs the admin role")
    if KIND_DEPTH[body.kind] <= KIND_DEPTH.get(parent.kind, -1):
        raise Invalid(f"kind: a {body.kind} cannot be placed under a {parent.kind}")
    code = body.code or _next_child_code(db, parent)
    if db.get(AreaAlias, code) is not None:
        raise Conflict(f"{code} is already a former code of another area")
    area = create_area(db, code=code, name=body.name, kind=body.kind, parent_code=parent.code)
    area.latitude, area.longitude = body.latitude, body.longitude
    db.flush()
    audit.record(db, principal, "area.create", target=f"area:{area.code}", area_id=area.id,
                 details={"name": area.name, "kind": area.kind, "parent_code": parent.code,
                          "latitude": area.latitude, "longitude": area.longitude})
    return area_detail(db, area)


@router.patch("/{area_code}")
def patch_area(area_code: str, body: AreaUpdate, db: DbSession, principal: CurrentPrincipal) -> AreaDetail:
    area, _ = managed_area(db, principal, area_code, "changing this area needs the admin role")
    before = {"name": area.name, "latitude": area.latitude, "longitude": area.longitude}
    if body.name is not None:
        area.name = body.name
    if "latitude" in body.model_fields_set:
        area.latitude, area.longitude = body.latitude, body.longitude
    after = {"name": area.name, "latitude": area.latitude, "longitude": area.longitude}
    audit.record(db, principal, "area.edit", target=f"area:{area.code}", area_id=area.id,
                 details={"changes": {k: {"old": before[k], "new": after[k]} for k in before if before[k] != after[k]}})
    db.flush()
    return area_detail(db, area)


@router.post("/{area_code}/aliases", status_code=201)
def post_alias(area_code: str, body: AliasIn, db: DbSession, principal: CurrentPrincipal) -> AreaDetail:
    area, _ = managed_area(db, principal, area_code, "adding former codes needs the admin role")
    if _code_taken(db, body.code):
        raise Conflict(f"{body.code} is already the code or a former code of an area")
    db.add(AreaAlias(code=body.code, area_id=area.id, note=" ".join(body.note.split())))
    audit.record(db, principal, "area.alias_add", target=f"area:{area.code}", area_id=area.id,
                 details={"alias": body.code, "note": body.note})
    db.flush()
    return area_detail(db, area)


@router.delete("/{area_code}/aliases/{alias_code}", status_code=204)
def delete_alias(area_code: str, alias_code: str, db: DbSession, principal: CurrentPrincipal) -> None:
    area, _ = managed_area(db, principal, area_code, "removing former codes needs the admin role")
    alias = db.get(AreaAlias, alias_code)
    if alias is None or alias.area_id != area.id:
        raise NotFound(f"{alias_code} is not a former code of {area.code}")
    audit.record(db, principal, "area.alias_remove", target=f"area:{area.code}", area_id=area.id,
                 details={"alias": alias_code})
    db.delete(alias)
