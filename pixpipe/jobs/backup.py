"""The backup copy of an original: copied to the backup store once, for every runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import Kind, PixpipeError
from ..logs import log

if TYPE_CHECKING:
    from ..storage import Meta, Stores


async def back_up(stores: Stores, key: str) -> bool:
    """Copy ``key`` to the backup store unless an identical copy is there; True if copied.
    Two local stores share the file (a hard link: see ``Store.copy_to``). A remote original
    is compared by the copy's own read (no request of its own for the metadata)."""
    copy = await stores.backup.head(key)
    skipped = False

    def identical(source: Meta) -> bool:
        nonlocal skipped
        skipped = (
            copy is not None
            and copy.size == source.size
            and copy.last_modified >= source.last_modified
        )
        return skipped

    try:
        await stores.originals.copy_to(stores.backup, key, link=True, unless=identical)
    except PixpipeError as exc:
        if exc.kind is not Kind.MISSING:
            raise
        log.info("backup: %s is gone from originals (quarantined or deleted)", key)
        return False
    return not skipped  # not the etag's absence: a store may give none


__all__ = ["back_up"]
