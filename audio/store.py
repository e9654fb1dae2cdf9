"""Content-addressed storage of audio files on disk.

A file is stored under its own sha256 (``root/ab/cd/abcd…``), so the name is
the integrity check agents verify after download, identical content is kept
once, and a file never changes once written.  Writes go to a temporary file
on the same filesystem, are fsynced and then renamed into place, so a reader
(or a crash) never sees half a file.  The store knows nothing about
announcements: the database maps those to hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

__all__ = ["AudioStore"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_STAGING = ".incoming"
_STALE_TMP_S = 3600.0


class AudioStore:
    CHUNK_SIZE = 1 << 20

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def start(self) -> None:
        """Create the directories and drop temporary files a crash left behind."""
        staging = self.root / _STAGING
        staging.mkdir(parents=True, exist_ok=True)
        # Only old ones: another process may be writing into the same store.
        cutoff = time.time() - _STALE_TMP_S
        for tmp in staging.iterdir():
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    log.info("removed stale temporary file %s", tmp)

    def path_for(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest (64 lowercase hex characters): {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def size(self, sha256: str) -> int:
        """Size in bytes; FileNotFoundError if absent."""
        return self.path_for(sha256).stat().st_size

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.path_for(sha256)
        if self._present(final, len(data)):
            return sha256
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{sha256[:16]}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                self._seal(out)
            self._commit(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return sha256

    def put_file(self, src: Path) -> str:
        """Copy a file in, hashing while copying (memory stays at one chunk)."""
        staging = self.root / _STAGING
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=staging, suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with open(src, "rb") as inp, os.fdopen(fd, "wb") as out:
                while chunk := inp.read(self.CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                self._seal(out)
            sha256 = digest.hexdigest()
            final = self.path_for(sha256)
            if self._present(final, size):
                tmp.unlink()
                return sha256
            final.parent.mkdir(parents=True, exist_ok=True)
            self._commit(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return sha256

    @staticmethod
    def _present(final: Path, size: int) -> bool:
        try:
            existing = final.stat().st_size
        except FileNotFoundError:
            return False
        if existing == size:
            return True
        # Writes are atomic, so this is outside damage: replace the file.
        log.warning("%s has %d bytes, expected %d; rewriting it", final, existing, size)
        return False

    @staticmethod
    def _seal(out: BinaryIO) -> None:
        out.flush()
        os.fsync(out.fileno())

    @staticmethod
    def _commit(tmp: Path, final: Path) -> None:
        # mkstemp creates 0600; the files are served to agents by other processes.
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        # Make the rename itself durable (POSIX; not possible on Windows).
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
