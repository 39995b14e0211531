"""What a local store does without a trip through obstore's runtime (~0.16 ms of CPU and a
thread hop each, several per image): a head from one ``stat``, a put written straight to the
page cache, and a hard link (a backup). Each keeps obstore's own conventions (its etag, its
``name#N`` staging names), so either may read what the other wrote."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stat_head(root: Path, key: str) -> tuple[int, str, datetime] | None:
    """A file's size, etag and modification time as obstore's local store reports them
    (etag ``{inode:x}-{mtime µs:x}-{size:x}``), or ``None`` when there is no file."""
    try:
        found = os.stat(f"{root}/{key}")
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(found.st_mode):
        return None
    return _head(found)


def _head(found: os.stat_result) -> tuple[int, str, datetime]:
    micros = found.st_mtime_ns // 1000
    etag = f"{found.st_ino:x}-{micros:x}-{found.st_size:x}"
    return found.st_size, etag, _EPOCH + timedelta(microseconds=micros)


async def put_file(root: Path, key: str, data: bytes | memoryview | AsyncIterator[bytes]) -> str:
    """Write ``key``'s file as obstore's local store does, atomically (a staging name beside
    it, renamed over it: readers see the old file or the new one), and return its etag.

    A stream is written chunk by chunk as it arrives: never gathered in memory. The writes go
    to the page cache from the event loop itself (a 1.2 MB original ~0.6 ms of CPU, against
    ~1 ms through obstore's runtime; a 50 KB variant 0.1 against 0.4). A stream that fails
    leaves nothing behind."""
    path = f"{root}/{key}"
    staging = _staging(path)
    try:
        fd = os.open(staging, _CREATE, 0o666)
    except FileNotFoundError:  # a new folder
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(staging, _CREATE, 0o666)
    try:
        try:
            if isinstance(data, bytes | memoryview):
                _write_all(fd, data)
            else:
                async for chunk in data:
                    _write_all(fd, chunk)
            written = os.fstat(fd)  # the file's own: the etag of what this put wrote
        finally:
            os.close(fd)
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise
    return _head(written)[1]


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _staging(path: str | Path) -> str:
    """A name beside ``path`` to write under until it is renamed over it: obstore's own form,
    ``name#N``, which listings and the folder watcher skip."""
    return f"{path}#{secrets.randbelow(10**9)}"


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def hard_link(source: Path, dest: Path) -> None:
    """``dest`` becomes another name of ``source``'s file, atomically (a staging name that
    listings and the folder watcher skip, renamed into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging(dest)
    os.link(source, staging)
    try:
        os.replace(staging, dest)
    except OSError:
        os.unlink(staging)
        raise


__all__ = ["hard_link", "put_file", "stat_head"]
