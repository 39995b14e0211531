"""The backup role: every original from the ``backup`` consumer copied to the backup store
once (``jobs/backup.py``); one given up on is kept as a dead letter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import bus
from ..events import ObjectCreated
from ..jobs.backup import back_up
from .deadletters import dead_letter
from .runtime import Runtime

if TYPE_CHECKING:
    import asyncio

    from nats.aio.msg import Msg

    from ..errors import PixpipeError


async def run_backup(rt: Runtime, stop: asyncio.Event, concurrency: int = 4) -> None:
    async def handle(msg: Msg) -> None:
        await back_up(rt.stores, ObjectCreated.model_validate_json(msg.data).key)

    async def give_up(msg: Msg, error: PixpipeError, attempts: int) -> None:
        await dead_letter(rt, "backup", msg, error, attempts)

    await bus.consume(rt.js, "backup", handle, give_up, retry=rt.settings.retry,
                      concurrency=concurrency, stop=stop)  # fmt: skip


__all__ = ["run_backup"]
