"""What every long-running role shares: a connected runtime (settings, bus, image state, the
five stores, the recipe), and the job core's ports filled in from it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import bus
from ..config import Settings
from ..jobs.variants import Context, Render
from ..recent import Recent
from ..recipe import Recipe
from ..storage import Stores, open_stores
from .states import KvStates

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

    from ..events import Event


@dataclass(slots=True)
class Runtime:
    """A connected process: settings, bus, image state and the five stores."""

    settings: Settings
    nc: NATS
    js: JetStreamContext
    states: KvStates
    stores: Stores
    recipe: Recipe
    # key → etag of the versions this process announced (the folder watcher then sees the
    # API's own uploads land, and need not announce them a second time).
    announced: Recent[str, str | None] = field(default_factory=lambda: Recent(1024))

    async def publish(self, event: Event) -> None:
        """Announce an event on the bus (its dedup id makes a repeat harmless)."""
        await bus.publish_event(self.js, event)

    def context(self, render: Render, recipe: Recipe | None = None) -> Context:
        """The job core's ports on this runtime: its stores, KV state, the bus, ``render``."""
        return Context(self.stores, self.states, self.publish, render, recipe or self.recipe,
                       self.settings.limits.frozen())


@contextlib.asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Connect to the bus, create the topology (idempotent), open the stores."""
    nc = await bus.connect(
        settings.bus.url, data_dir=settings.data_dir, **bus.client_options(settings.bus)
    )
    try:
        js = nc.jetstream()
        kv = await bus.ensure_topology(
            js, settings.retry, replicas=settings.bus.replicas, max_bytes=settings.bus.max_bytes
        )
        yield Runtime(settings, nc, js, KvStates(kv), open_stores(settings), settings.recipe)
    finally:
        # close, not drain: the roles have stopped pulling, and anything unacknowledged is
        # redelivered anyway; a drain would wait out its timeout on idle pull subscriptions.
        with contextlib.suppress(Exception):
            await nc.close()


__all__ = ["Runtime", "runtime"]
