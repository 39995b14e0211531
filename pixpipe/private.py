"""Files only this user may read (mode 600), written so that no reader ever sees half of one:
the generated API key, the signing secret, the embedded bus's password and its config.

``kept_secret`` creates a secret once, even when two processes start at the same moment: each
writes its candidate to a file of its own and links it into place; the link fails for all but
the first, and everyone reads what the first wrote.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 600, atomically (a reader sees old or new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def kept_secret(path: Path) -> tuple[str, bool]:
    """The secret kept at ``path``, made now if there is none: ``(secret, made_now)``."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        write_private(temp, secrets.token_urlsafe(32) + "\n")
        try:
            os.link(temp, path)  # fails if another process got there first: theirs is kept
            made = True
        except FileExistsError:
            made = False
        finally:
            temp.unlink()
        if made:
            return path.read_text().strip(), True
    return path.read_text().strip(), False


__all__ = ["kept_secret", "write_private"]
