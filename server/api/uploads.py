"""Audio uploads: the body is streamed to disk, checked by probing (never by its name), then prepared.

The file is sent as the raw request body (``Content-Type: audio/*`` or ``application/octet-stream``)
with the title and area in the query, so that permissions and the size limit are checked before a
byte is stored, the upload never sits whole in memory, and browsers can report upload progress.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from audio.probe import InvalidAudio, check_upload
from server.api.deps import CurrentPrincipal, RuntimeDep
from server.api.schemas import AnnouncementPublic
from server.content import check_may_upload, create_upload
from server.errors import Invalid, TooLarge

router = APIRouter(prefix="/api/v1/uploads", tags=["announcements"])

_CHUNK = 256 * 1024


@router.post("", status_code=201)
async def post_upload(request: Request, runtime: RuntimeDep, principal: CurrentPrincipal,
                      title: Annotated[str, Query(min_length=1, max_length=300)],
                      area_code: Annotated[str, Query(min_length=1, max_length=32)],
                      filename: Annotated[str, Query(max_length=255)] = "") -> AnnouncementPublic:
    def may_upload() -> int:
        with runtime.db.session() as db:
            return check_may_upload(db, principal, area_code)

    area_id = await run_in_threadpool(may_upload)
    limit = runtime.upload_limits.max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the file is {int(declared) / 2**20:.0f} MB; the limit is {limit / 2**20:.0f} MB")
    target = runtime.uploads_dir / f"{uuid.uuid4().hex}.upload"
    try:
        size = 0
        with target.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the file is larger than the limit of {limit / 2**20:.0f} MB")
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if size == 0:
            raise Invalid("the file is empty")
        try:
            await run_in_threadpool(check_upload, target, runtime.upload_limits)
        except InvalidAudio as exc:
            raise Invalid(str(exc)) from exc

        def store() -> AnnouncementPublic:
            with runtime.db.session() as db:
                announcement = create_upload(db, principal, title=title.strip(), area_id=area_id,
                                             upload_name=Path(filename).name, upload_path=target)
                db.flush()
                return AnnouncementPublic.model_validate(announcement)

        created = await run_in_threadpool(store)
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink()
        raise
    runtime.renderer.submit(created.id)
    return created
