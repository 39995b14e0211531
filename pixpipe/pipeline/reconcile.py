"""Nothing stays ``pending`` for ever. An upload is stored, marked ``pending``, then announced;
should the announcement be lost (the bus went away between the two, the process died) or a
batch hold be cut short, no event would ever come for it. This role looks, at start and then
every ``RECONCILE_EVERY_S``, for images ``pending`` for longer than
``retry.reannounce_after_s`` and announces them again (an ``object.created`` under an id of its
own: a duplicate of one still queued is skipped by the worker as already done). A held image
whose batch does not list it is held again while the batch is open, else announced."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..events import ObjectCreated
from ..logs import log
from . import orders
from .runtime import Runtime

if TYPE_CHECKING:
    from ..jobs.state import ImageState

RECONCILE_EVERY_S = 300.0  # each sweep lists the image states: not too often


async def run_reconcile(rt: Runtime, stop: asyncio.Event, every: float | None = None) -> None:
    """The reconciler role: a sweep now, then one every ``every`` seconds until ``stop``."""
    every = every or min(RECONCILE_EVERY_S, rt.settings.retry.reannounce_after_s)
    while not stop.is_set():
        try:
            await sweep(rt)
        except Exception as exc:  # the bus or a store away: the next sweep tries again
            log.warning("reconcile sweep failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def sweep(rt: Runtime) -> int:
    """Announce again every image pending for too long; returns how many."""
    now = datetime.now(UTC)
    stale = [
        state async for state in rt.states.all()
        if state.state == "pending"
        and (now - state.updated).total_seconds() > rt.settings.retry.reannounce_after_s
    ]  # fmt: skip
    for state in stale:
        try:
            await _again(rt, state)
        except Exception as exc:  # this one next time; the others now
            log.warning("could not announce %s again: %s", state.key, exc)
    return len(stale)


async def _again(rt: Runtime, state: ImageState) -> None:
    meta = await rt.stores.originals.head(state.key)
    if meta is None:
        return  # gone: nothing to make
    if state.batch:
        batch = await orders.get(rt, state.batch)
        if batch is not None and state.key in batch.members:
            return  # held as it should be: its batch releases it
        if batch is not None and batch.state == "open":
            log.warning("holding %s again in batch %s", state.key, state.batch)
            await orders.hold(rt, state.batch, state.key)
            return
    log.warning("announcing %s again: pending since %s", state.key, state.updated)
    event = ObjectCreated(key=state.key, size=meta.size, etag=meta.etag,
                          content_type=meta.content_type, again=True)  # fmt: skip
    await rt.publish(event)
    await rt.states.change(state.key, lambda s: s.but() if s and s.state == "pending" else None)


__all__ = ["RECONCILE_EVERY_S", "run_reconcile", "sweep"]
