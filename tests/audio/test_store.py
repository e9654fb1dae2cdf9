"""Content-addressed audio store."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from audio.store import AudioStore


@pytest.fixture
def store(tmp_path: Path) -> AudioStore:
    s = AudioStore(tmp_path / "audio")
    s.start()
    return s


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_constructor_only_assigns(tmp_path: Path) -> None:
    AudioStore(tmp_path / "later")
    assert not (tmp_path / "later").exists()


def test_put_bytes_layout_and_lookup(store: AudioStore) -> None:
    data = b"ID3 pretend mp3"
    sha = store.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    path = store.path_for(sha)
    assert path == store.root / sha[:2] / sha[2:4] / sha
    assert path.read_bytes() == data
    assert store.has(sha) and store.size(sha) == len(data)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    absent = "0" * 64
    assert not store.has(absent)
    with pytest.raises(FileNotFoundError):
        store.size(absent)


def test_put_bytes_dedups(store: AudioStore) -> None:
    sha = store.put_bytes(b"same")
    inode = store.path_for(sha).stat().st_ino
    assert store.put_bytes(b"same") == sha
    assert store.path_for(sha).stat().st_ino == inode  # not rewritten
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == 1
    assert _leftovers(store.root) == []


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "A" * 64,
        "g" * 64,
        "0" * 63,
        "0" * 65,
        "0" * 64 + "\n",
        "../" + "0" * 61,
        "/etc/passwd",
        " " + "0" * 63,
    ],
)
def test_bad_hashes_are_rejected(store: AudioStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.path_for(bad)
    with pytest.raises(ValueError):
        store.has(bad)


def test_non_string_hash_is_rejected(store: AudioStore) -> None:
    with pytest.raises(ValueError):
        store.path_for(b"0" * 64)  # type: ignore[arg-type]


def test_existing_file_is_kept_and_a_damaged_one_replaced(store: AudioStore) -> None:
    data = b"announcement"
    sha = hashlib.sha256(data).hexdigest()
    path = store.path_for(sha)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)  # e.g. put there by an earlier run
    assert store.put_bytes(data) == sha
    assert path.read_bytes() == data
    path.write_bytes(b"trunc")  # damaged outside the store
    assert store.put_bytes(data) == sha
    assert path.read_bytes() == data
    assert _leftovers(store.root) == []


def test_put_file_streams_in_chunks(
    store: AudioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AudioStore, "CHUNK_SIZE", 4096)
    content = os.urandom(4096 * 5 + 123)
    src = tmp_path / "upload.mp3"
    src.write_bytes(content)

    reads: list[int] = []
    real_open = open

    def spying_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle: Any = real_open(file, mode, *args, **kwargs)
        if file == src and "r" in mode:
            real_read = handle.read

            def read(n: int = -1) -> bytes:
                reads.append(n)
                data: bytes = real_read(n)
                return data

            handle.read = read
        return handle

    monkeypatch.setattr("builtins.open", spying_open)
    sha = store.put_file(src)
    monkeypatch.undo()

    assert sha == hashlib.sha256(content).hexdigest()
    assert store.path_for(sha).read_bytes() == content
    assert reads and all(0 < n <= 4096 for n in reads)  # never the whole file at once
    assert store.put_file(src) == sha  # dedup
    assert store.put_bytes(content) == sha
    assert _leftovers(store.root) == []


def test_put_file_missing_source_leaves_nothing(store: AudioStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "absent.mp3")
    assert _leftovers(store.root) == []


def test_concurrent_puts_of_the_same_content(store: AudioStore) -> None:
    data = os.urandom(200_000)
    with ThreadPoolExecutor(max_workers=8) as pool:
        shas = set(pool.map(lambda _: store.put_bytes(data), range(16)))
    assert shas == {hashlib.sha256(data).hexdigest()}
    assert store.path_for(shas.pop()).read_bytes() == data
    assert _leftovers(store.root) == []


def test_start_removes_only_stale_temporaries(tmp_path: Path) -> None:
    store = AudioStore(tmp_path / "s")
    store.start()
    staging = store.root / ".incoming"
    stale, fresh = staging / "old.tmp", staging / "new.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    store.start()  # idempotent
    assert not stale.exists() and fresh.exists()
