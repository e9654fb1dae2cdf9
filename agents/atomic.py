"""Files that are either wholly old or wholly new after a power cut: write aside, fsync, rename, fsync dir.

A Raspberry Pi loses power without warning; a half-written decoded WAV or audio file must never be taken
for a good one. ``os.replace`` is atomic on POSIX, but only the fsync of the file *before* it and of the
directory *after* it make the outcome durable (ext4 may otherwise reorder the rename before the data).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(source: Path, target: Path) -> None:
    """Rename a complete, fsynced file over ``target`` and make the rename itself durable."""
    os.replace(source, target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """Yield a handle on a temporary file beside ``target``; on success it replaces ``target`` durably,
    on any error the temporary file is removed and ``target`` is untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        replace_durably(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(target: Path, data: bytes) -> None:
    with atomic_writer(target) as handle:
        handle.write(data)
