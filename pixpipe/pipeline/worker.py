"""The variants role: ``object.created`` from the ``variants`` consumer → the job core
(``jobs/variants.py``) with the render pool; giving up records the failure the same way."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .. import bus
from ..events import ObjectCreated
from ..jobs import variants
from ..jobs.pool import RenderPool
from ..recipe import Recipe
from .runtime import Runtime

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ..errors import PixpipeError


class Worker:
    """Renders originals pulled from the ``variants`` consumer, in a pool of processes."""

    def __init__(self, rt: Runtime, pool: RenderPool, recipe: Recipe | None = None) -> None:
        self.rt = rt
        self.pool = pool
        self.ctx = rt.context(pool.render, recipe)
        self.beat_every = bus.heartbeat_every("variants", rt.settings.retry)

    async def run(self, stop: asyncio.Event) -> None:
        # Twice the processes in hand: the next original downloads while the pool renders.
        await bus.consume(
            self.rt.js, "variants", self.handle, self.give_up, retry=self.rt.settings.retry,
            concurrency=2 * self.pool.workers, stop=stop,
        )  # fmt: skip

    async def handle(self, msg: Msg) -> None:
        event = ObjectCreated.model_validate_json(msg.data)
        seq = msg.metadata.sequence.stream if msg.metadata.sequence else None
        async with bus.heartbeat(msg, self.beat_every):
            await variants.render_variants(
                self.ctx, event, msg.metadata.num_delivered or 1,
                delivery=str(seq) if seq is not None else None,
            )  # fmt: skip

    async def give_up(self, msg: Msg, error: PixpipeError, attempts: int) -> None:
        event = ObjectCreated.model_validate_json(msg.data)
        await variants.fail(self.ctx, event.key, error, attempts, etag=event.etag)


__all__ = ["Worker"]
