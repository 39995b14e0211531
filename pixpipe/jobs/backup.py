"""The backup copy of an original: copied to the backup store once, for every runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..logs import log

if TYPE_CHECKING:
    from ..storage import Stores


async def back_up(stores: Stores, key: str) -> bool:
    """Copy ``key`` to the backup store unless an identical copy is there; True if copied.
    Two local stores share the file (a hard link: see ``Store.copy_to``)."""
    source = await stores.originals.head(key)
    if source is None:
        log.info("backup: %s is gone from originals (quarantined or deleted)", key)
        return False
    copy = await stores.backup.head(key)
    if copy is not None and copy.size == source.size and copy.last_modified >= source.last_modified:
        return False
    await stores.originals.copy_to(stores.backup, key, link=True)
    return True


__all__ = ["back_up"]
