"""Audio downloads for agents: content-addressed, per-agent bearer token, HTTP Range supported."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from server.api.deps import DbSession, RuntimeDep, bearer_token
from server.directory import device_by_token
from server.errors import NotFound, Unauthorized
from server.models import AudioAsset

router = APIRouter(prefix="/api/v1/audio", tags=["audio"])
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@router.get("/{sha256}")
def get_audio(sha256: str, request: Request, db: DbSession, runtime: RuntimeDep) -> FileResponse:
    token = bearer_token(request)
    if token is None or device_by_token(db, token) is None:
        raise Unauthorized("a registered agent's token is required")
    if not _SHA256.match(sha256):
        raise NotFound("no such audio")
    asset = db.get(AudioAsset, sha256)
    if asset is None or not runtime.store.has(sha256):
        raise NotFound("no such audio")
    return FileResponse(runtime.store.path_for(sha256), media_type=asset.mime,
                        headers={"Cache-Control": "private, max-age=31536000, immutable"})
