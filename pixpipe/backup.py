"""The backup consumer: every original copied to the backup store, once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import PixpipeError
from .events import ObjectCreated
from .service import Runtime, consume, dead_letter, log

if TYPE_CHECKING:
    import asyncio

    from nats.aio.msg import Msg


async def back_up(rt: Runtime, key: str) -> bool:
    """Copy ``key`` to the backup store unless an identical copy is there; True if copied."""
    source = await rt.stores.originals.head(key)
    if source is None:
        log.info("backup: %s is gone from originals (quarantined or deleted)", key)
        return False
    copy = await rt.stores.backup.head(key)
    if copy is not None and copy.size == source.size and copy.last_modified >= source.last_modified:
        return False
    await rt.stores.originals.copy_to(rt.stores.backup, key)
    return True


async def run_backup(rt: Runtime, stop: asyncio.Event, concurrency: int = 4) -> None:
    async def handle(msg: Msg) -> None:
        await back_up(rt, ObjectCreated.model_validate_json(msg.data).key)

    async def give_up(msg: Msg, error: PixpipeError, attempts: int) -> None:
        await dead_letter(rt, "backup", msg, error, attempts)

    await consume(rt, "backup", handle, give_up, concurrency=concurrency, stop=stop)
