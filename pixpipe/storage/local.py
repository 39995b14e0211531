"""What a local store answers without a trip through obstore's runtime (~0.16 ms of CPU and
a thread hop each, five per image): a head from one ``stat``, and a hard link (a backup)."""

from __future__ import annotations

import os
import secrets
import stat
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
    micros = found.st_mtime_ns // 1000
    etag = f"{found.st_ino:x}-{micros:x}-{found.st_size:x}"
    return found.st_size, etag, _EPOCH + timedelta(microseconds=micros)


def hard_link(source: Path, dest: Path) -> None:
    """``dest`` becomes another name of ``source``'s file, atomically (a staging name that
    listings and the folder watcher skip, renamed into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = f"{dest}#{secrets.randbelow(10**9)}"
    os.link(source, staging)
    try:
        os.replace(staging, dest)
    except OSError:
        os.unlink(staging)
        raise


__all__ = ["hard_link", "stat_head"]
