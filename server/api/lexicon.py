"""The pronunciation lexicon (place names, local acronyms) and the spoken-form preview."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from server import audit
from server.api.deps import CurrentPrincipal, DbSession
from server.content import spoken_form
from server.errors import Conflict, Forbidden, NotFound
from server.models import LexiconEntry
from server.permissions import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["speech"])


class LexiconCreate(BaseModel):
    term: str = Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")
    spoken: str = Field(min_length=1, max_length=300)


class LexiconPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    term: str
    spoken: str


class PreviewRequest(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)


class PreviewPublic(BaseModel):
    spoken_text: str


def _require_admin(principal: Principal) -> None:
    # The lexicon applies to every announcement of the installation, so only administrators edit it.
    if Role.ADMIN not in principal.roles:
        raise Forbidden("editing the pronunciation lexicon needs the admin role")


@router.get("/lexicon")
def list_lexicon(db: DbSession, principal: CurrentPrincipal) -> list[LexiconPublic]:
    rows = db.scalars(select(LexiconEntry).order_by(LexiconEntry.term)).all()
    return [LexiconPublic.model_validate(r) for r in rows]


@router.post("/lexicon", status_code=201)
def post_lexicon(body: LexiconCreate, db: DbSession, principal: CurrentPrincipal) -> LexiconPublic:
    _require_admin(principal)
    if db.scalar(select(LexiconEntry).where(LexiconEntry.term == body.term)) is not None:
        raise Conflict(f"{body.term} is already in the lexicon")
    entry = LexiconEntry(term=body.term, spoken=body.spoken.strip(), created_by=principal.user_id)
    db.add(entry)
    db.flush()
    audit.record(db, principal, "lexicon.add", target=f"lexicon:{entry.term}",
                 details={"id": entry.id, "term": entry.term, "spoken": entry.spoken})
    return LexiconPublic.model_validate(entry)


@router.delete("/lexicon/{entry_id}", status_code=204)
def delete_lexicon(entry_id: int, db: DbSession, principal: CurrentPrincipal) -> None:
    _require_admin(principal)
    entry = db.get(LexiconEntry, entry_id)
    if entry is None:
        raise NotFound(f"no lexicon entry {entry_id}")
    audit.record(db, principal, "lexicon.delete", target=f"lexicon:{entry.term}",
                 details={"id": entry.id, "term": entry.term, "spoken": entry.spoken})
    db.delete(entry)


@router.post("/speech/preview")
def post_preview(body: PreviewRequest, db: DbSession, principal: CurrentPrincipal) -> PreviewPublic:
    """The spoken form of a text, as the loudspeakers would say it (nothing is stored)."""
    return PreviewPublic(spoken_text=spoken_form(db, body.text))
