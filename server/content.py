"""Announcements: text in, normalised spoken form, speech rendered off the request path, review.

Rendering runs in a worker thread; the announcement shows ``audio_status`` pending → ready | failed and
records which engine and voice made the audio, so the console can warn when the fallback voice spoke.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.errors import AudioError
from audio.loudness import LoudnessTarget
from audio.normalize import normalize
from audio.prepare import prepare_file
from audio.render import DISTRIBUTION_MIME, render_speech
from audio.store import AudioStore
from audio.tts import TtsEngine
from schedules import AreaId
from server import audit
from server.db import Database
from server.directory import area_by_code, load_tree, require
from server.errors import Conflict, Forbidden, NotFound
from server.models import Announcement, Area, AudioAsset, LexiconEntry, utcnow
from server.permissions import Action, Principal

log = logging.getLogger(__name__)

PRIMARY_ENGINE = "gtts"


def lexicon(db: Session) -> dict[str, str]:
    return {e.term: e.spoken for e in db.scalars(select(LexiconEntry)).all()}


def spoken_form(db: Session, text: str) -> str:
    """What the loudspeakers will say: the admins' lexicon first, then the built-in rules."""
    return normalize(text, lexicon(db))


def create_announcement(db: Session, principal: Principal, *, title: str, text: str, area_code: str) -> Announcement:
    area = area_by_code(db, area_code)
    require(principal, Action.EDIT_CONTENT, area, load_tree(db), "writing announcements needs the editor role here")
    announcement = Announcement(area_id=area.id, title=title, text=text, spoken_text=spoken_form(db, text),
                                created_by=principal.user_id, review_status="submitted", audio_status="pending")
    db.add(announcement)
    db.flush()
    audit.record(db, principal, "announcement.create", target=f"announcement:{announcement.id}", area_id=area.id,
                 details={"title": title, "kind": "tts", "characters": len(text)})
    return announcement


def check_may_upload(db: Session, principal: Principal, area_code: str) -> int:
    """Checked before a single byte of the upload is read; returns the area id."""
    area = area_by_code(db, area_code)
    require(principal, Action.EDIT_CONTENT, area, load_tree(db), "uploading audio needs the editor role here")
    return area.id


def create_upload(db: Session, principal: Principal, *, title: str, area_id: int, upload_name: str,
                  upload_path: Path) -> Announcement:
    announcement = Announcement(area_id=area_id, title=title, kind="upload", text="", spoken_text="",
                                upload_name=upload_name[:255], upload_path=str(upload_path),
                                created_by=principal.user_id, review_status="submitted", audio_status="pending")
    db.add(announcement)
    db.flush()
    audit.record(db, principal, "announcement.create", target=f"announcement:{announcement.id}", area_id=area_id,
                 details={"title": title, "kind": "upload", "file": upload_name[:255]})
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


@dataclass(frozen=True)
class RenderOptions:
    target: LoudnessTarget = field(default_factory=LoudnessTarget)
    lead_in_ms: int = 600


@dataclass(frozen=True)
class Jingles:
    chime: Path | None = None
    intro: Path | None = None
    outro: Path | None = None


class Renderer:
    """Turns announcements into broadcast audio on a small thread pool (TTS and ffmpeg block).

    Progress is written to the announcement (and pushed live) in steps of 5 %, so a long synthesis or a
    two-hour upload shows how far it is instead of a bare "pending".
    """

    def __init__(self, db: Database, store: AudioStore, tts: TtsEngine, *,
                 options: Callable[[], RenderOptions] = RenderOptions,
                 on_progress: Callable[[int, int], None] | None = None, workers: int = 2) -> None:
        self._db = db
        self._store = store
        self._tts = tts
        self._options = options
        """Read for every item: loudness and lead-in may change in the console at run time."""
        self._on_progress = on_progress
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
            kind, spoken, upload = announcement.kind, announcement.spoken_text, announcement.upload_path
            jingles = self._jingles(db, announcement.area_id)
        reporter = _ProgressReporter(self._db, announcement_id, self._on_progress)
        try:
            if kind == "upload":
                produced = self._prepare_upload(Path(upload or ""), reporter, jingles)
            else:
                reporter(0.05)
                options = self._options()
                rendered = render_speech(spoken, self._tts, lead_in_ms=options.lead_in_ms,
                                         target=options.target, chime=jingles.chime, intro=jingles.intro,
                                         outro=jingles.outro)
                self._store.put_bytes(rendered.data)
                produced = _Produced(rendered.sha256, len(rendered.data), rendered.duration_ms, rendered.mime,
                                     rendered.engine, rendered.voice, rendered.lufs, rendered.true_peak_db)
        except (AudioError, OSError) as exc:
            log.warning("announcement %d could not be rendered: %s", announcement_id, exc)
            with self._db.session() as db:
                row = db.get(Announcement, announcement_id)
                if row is not None:
                    row.audio_status, row.audio_error = "failed", str(exc)[:2000]
        else:
            self._finish(announcement_id, produced)
            if kind == "upload" and upload:
                Path(upload).unlink(missing_ok=True)
        if self._on_progress is not None:
            self._on_progress(announcement_id, 100)

    def _jingles(self, db: Session, area_id: int) -> Jingles:
        """Chime, intro and outro of the nearest area (the commune's own, else its district's, …)."""
        found: dict[str, Path | None] = {"chime": None, "intro": None, "outro": None}
        for ancestor in load_tree(db).ancestors(AreaId(area_id)):
            area = db.get(Area, ancestor)
            if area is None:
                continue
            for name, sha256 in (("chime", area.chime_sha256), ("intro", area.intro_sha256),
                                 ("outro", area.outro_sha256)):
                if found[name] is None and sha256 and self._store.has(sha256):
                    found[name] = self._store.path_for(sha256)
        return Jingles(**found)

    def _prepare_upload(self, source: Path, reporter: Callable[[float], None], jingles: Jingles) -> _Produced:
        with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
            options = self._options()
            prepared = prepare_file(source, Path(tmp) / "prepared.mp3", target=options.target,
                                    lead_in_ms=options.lead_in_ms, progress=reporter, chime=jingles.chime,
                                    intro=jingles.intro, outro=jingles.outro)
            sha256 = self._store.put_file(prepared.path)
        return _Produced(sha256, prepared.size_bytes, prepared.duration_ms, DISTRIBUTION_MIME, "upload", "",
                         prepared.lufs, prepared.true_peak_db)

    def _finish(self, announcement_id: int, produced: _Produced) -> None:
        with self._db.session() as db:
            if db.get(AudioAsset, produced.sha256) is None:
                db.add(AudioAsset(sha256=produced.sha256, size_bytes=produced.size_bytes,
                                  duration_ms=produced.duration_ms, mime=produced.mime, engine=produced.engine,
                                  voice=produced.voice, lufs=_finite(produced.lufs),
                                  true_peak_db=_finite(produced.true_peak_db),
                                  created_at=utcnow()))
                db.flush()
            row = db.get(Announcement, announcement_id)
            if row is not None:
                row.audio_sha256 = produced.sha256
                row.audio_status, row.progress, row.upload_path = "ready", 100, None
                row.engine, row.voice = produced.engine, produced.voice
                row.fallback_used = row.kind == "tts" and produced.engine != PRIMARY_ENGINE


def _finite(value: float | None) -> float | None:
    """Digital silence measures -inf; the database and JSON get no value instead."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class _Produced:
    sha256: str
    size_bytes: int
    duration_ms: int
    mime: str
    engine: str
    voice: str
    lufs: float | None
    true_peak_db: float | None


class _ProgressReporter:
    """Stores progress in 5 % steps (a callback per ffmpeg progress line would flood the database)."""

    def __init__(self, db: Database, announcement_id: int, notify: Callable[[int, int], None] | None) -> None:
        self._db = db
        self._id = announcement_id
        self._notify = notify
        self._last = -1

    def __call__(self, fraction: float) -> None:
        percent = max(0, min(99, int(fraction * 100)))
        if percent < self._last + 5:
            return
        self._last = percent
        with self._db.session() as db:
            row = db.get(Announcement, self._id)
            if row is not None:
                row.progress = percent
        if self._notify is not None:
            self._notify(self._id, percent)


def set_jingles(db: Session, principal: Principal, area_code: str, choices: dict[str, int | None]) -> Area:
    """Use approved announcements' audio as an area's chime, intro or outro (None clears one)."""
    area = area_by_code(db, area_code)
    require(principal, Action.MANAGE, area, load_tree(db), "setting jingles needs the admin role here")
    for name, announcement_id in choices.items():
        sha256 = None
        if announcement_id is not None:
            source = get_announcement(db, principal, announcement_id)
            if source.review_status != "approved" or source.audio_sha256 is None:
                raise Conflict(f"announcement {announcement_id} is not approved audio")
            sha256 = source.audio_sha256
        setattr(area, f"{name}_sha256", sha256)
    return area
