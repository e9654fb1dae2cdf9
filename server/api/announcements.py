"""Announcements: write, hear, review."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from server import audit
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.api.schemas import AnnouncementCreate, AnnouncementPublic, ReviewRequest
from server.content import create_announcement, get_announcement, list_announcements, review_announcement
from server.errors import NotFound

router = APIRouter(prefix="/api/v1/announcements", tags=["announcements"])


@router.post("", status_code=201)
def post_announcement(body: AnnouncementCreate, db: DbSession, principal: CurrentPrincipal,
                      runtime: RuntimeDep) -> AnnouncementPublic:
    announcement = create_announcement(db, principal, title=body.title, text=body.text, area_code=body.area_code)
    db.commit()  # the renderer reads it from its own session
    runtime.renderer.submit(announcement.id)
    return AnnouncementPublic.model_validate(announcement)


@router.get("")
def get_announcements(db: DbSession, principal: CurrentPrincipal) -> list[AnnouncementPublic]:
    return [AnnouncementPublic.model_validate(a) for a in list_announcements(db, principal)]


@router.get("/{announcement_id}")
def get_one(announcement_id: int, db: DbSession, principal: CurrentPrincipal) -> AnnouncementPublic:
    return AnnouncementPublic.model_validate(get_announcement(db, principal, announcement_id))


@router.get("/{announcement_id}/audio")
def get_audio(announcement_id: int, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> FileResponse:
    announcement = get_announcement(db, principal, announcement_id)
    if announcement.audio_sha256 is None:
        raise NotFound("this announcement has no audio yet")
    return FileResponse(runtime.store.path_for(announcement.audio_sha256), media_type="audio/mpeg")


@router.post("/{announcement_id}/review")
def post_review(announcement_id: int, body: ReviewRequest, db: DbSession,
                principal: CurrentPrincipal) -> AnnouncementPublic:
    announcement = review_announcement(db, principal, announcement_id, approve=body.approve, comment=body.comment)
    audit.record(db, principal, "announcement.approve" if body.approve else "announcement.reject",
                 target=f"announcement:{announcement.id}", area_id=announcement.area_id,
                 details={"title": announcement.title, "comment": body.comment}, result=announcement.review_status)
    return AnnouncementPublic.model_validate(announcement)
