"""Announcements: text in, normalised spoken form, speech rendered off the request path, review.

Rendering runs in a worker thread; the announcement shows ``audio_status`` pending → ready | failed and
records which engine and voice made the audio, so the console can warn when the fallback voice spoke.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.errors import AudioError
from audio.normalize import normalize
from audio.render import render_speech
from audio.store import AudioStore
from audio.tts import TtsChain
from schedules import AreaId
from server.db import Database
from server.directory import area_by_code, load_tree, require
from server.errors import Conflict, Forbidden, NotFound
from server.models import Announcement, AudioAsset, utcnow
from server.permissions import Action, Principal

log = logging.getLogger(__name__)

PRIMARY_ENGINE = "gtts"


def create_announcement(db: Session, principal: Principal, *, title: str, text: str, area_code: str) -> Announcement:
    area = area_by_code(db, area_code)
    require(principal, Action.EDIT_CONTENT, area, load_tree(db), "writing announcements needs the editor role here")
    announcement = Announcement(area_id=area.id, title=title, text=text, spoken_text=normalize(text),
                                created_by=principal.user_id, review_status="submitted", audio_status="pending")
    db.add(announcement)
    db.flush()
    return announcement


def get_announcement(db: Session, principal: Principal, announcement_id: int) -> Announcement:
    announcement = db.get(Announcement, announcement_id)
    if announcement is None or not principal.can(Action.VIEW, AreaId(announcement.area_id), load_tree(db)):
        raise NotFound(f"no announcement {announcement_id}")
    return announcement


def list_announcements(db: Session, principal: Principal, limit: int = 100) -> list[Announcement]:
    ids = principal.areas_for(Action.VIEW, load_tree(db))
    return list(db.scalars(select(Announcement).where(Announcement.area_id.in_(ids))
                           .order_by(Announcement.id.desc()).limit(limit)).all())


def review_announcement(db: Session, principal: Principal, announcement_id: int, *, approve: bool,
                        comment: str) -> Announcement:
    announcement = get_announcement(db, principal, announcement_id)
    if not principal.can(Action.APPROVE, AreaId(announcement.area_id), load_tree(db)):
        raise Forbidden("reviewing needs the approver role on this area")
    if announcement.created_by == principal.user_id:
        raise Forbidden("an announcement must be reviewed by someone other than its author")
    if announcement.review_status != "submitted":
        raise Conflict(f"announcement is already {announcement.review_status}")
    if approve and announcement.audio_status != "ready":
        raise Conflict("the audio is not ready yet; approve it once it can be heard")
    announcement.review_status = "approved" if approve else "rejected"
    announcement.review_comment = comment
    announcement.reviewed_by = principal.user_id
    return announcement


class Renderer:
    """Renders announcements to audio on a small thread pool (TTS and ffmpeg are blocking)."""

    def __init__(self, db: Database, store: AudioStore, tts: TtsChain,
                 on_done: Callable[[int], None] | None = None, workers: int = 2) -> None:
        self._db = db
        self._store = store
        self._tts = tts
        self._on_done = on_done
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="render")
        # Anything left pending by a restart is rendered again: nothing submitted is lost.
        with self._db.session() as db:
            pending = db.scalars(select(Announcement.id).where(Announcement.audio_status == "pending")).all()
        for announcement_id in pending:
            self.submit(announcement_id)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, announcement_id: int) -> Future[None]:
        if self._pool is None:
            raise RuntimeError("renderer not started")
        return self._pool.submit(self._render, announcement_id)

    def _render(self, announcement_id: int) -> None:
        with self._db.session() as db:
            announcement = db.get(Announcement, announcement_id)
            if announcement is None or announcement.audio_status != "pending":
                return
            spoken = announcement.spoken_text
        try:
            rendered = render_speech(spoken, self._tts)
            self._store.put_bytes(rendered.data)
        except AudioError as exc:
            log.warning("announcement %d could not be rendered: %s", announcement_id, exc)
            with self._db.session() as db:
                row = db.get(Announcement, announcement_id)
                if row is not None:
                    row.audio_status, row.audio_error = "failed", str(exc)[:2000]
        else:
            with self._db.session() as db:
                if db.get(AudioAsset, rendered.sha256) is None:
                    db.add(AudioAsset(sha256=rendered.sha256, size_bytes=len(rendered.data),
                                      duration_ms=rendered.duration_ms, mime=rendered.mime,
                                      engine=rendered.engine, voice=rendered.voice, created_at=utcnow()))
                    db.flush()
                row = db.get(Announcement, announcement_id)
                if row is not None:
                    row.audio_sha256 = rendered.sha256
                    row.audio_status = "ready"
                    row.engine, row.voice = rendered.engine, rendered.voice
                    row.fallback_used = rendered.engine != PRIMARY_ENGINE
        if self._on_done is not None:
            self._on_done(announcement_id)
