"""The ``batches`` consumer: image outcomes credited to their batches, and each batch's
watchdog (``check``).

Crediting an image costs a few small writes, whatever the size of the batch: its outcome
``o.{id}.{key}`` is created once (a redelivered event finds it there), then the counter
``c.{id}`` is bumped. The creator of the last outcome finishes the batch; the watchdog
recounts the outcomes should a process die in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ... import bus
from ...errors import PixpipeError
from ...events import SUBJECT_IMAGE_FAILED, SUBJECT_IMAGE_PROCESSED
from ...logs import log
from ..deadletters import dead_letter
from ..runtime import Runtime
from .documents import (
    Counter,
    Outcome,
    bucket,
    counter_key,
    get,
    get_counter,
    get_member,
    outcome_key,
    outcome_keys,
)
from .lifecycle import (
    SUBJECT_CHECK,
    announce,
    expire,
    finish,
    keep_alive,
    lifetime,
    release,
    release_cut_short,
)

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.kv import KeyValue

_RECHECK_S = 60.0  # an unfinished batch is looked at again at least this often


async def finished(
    rt: Runtime, key: str, outcome: Outcome, etag: str | None = None
) -> float | None:
    """Credit an image's outcome to its batch (if it is in one); the last one finishes the
    batch and announces it. Returns a delay to look again when another process's
    announcement of this batch may still be under way."""
    kv = await bucket(rt)
    index = await get_member(kv, key)
    if index is None or not index.batch or (etag and index.etag and etag != index.etag):
        return None  # in no batch, or an older upload of the key
    try:
        await kv.create(outcome_key(index.batch, key), outcome.encode())
    except KeyWrongLastSequenceError:
        return None  # credited already (a redelivery)
    counter = await _bump(kv, index.batch, outcome)
    if counter is None or not counter.settled:
        return None
    return await finish(rt, index.batch, counter)


async def _bump(kv: KeyValue, batch_id: str, outcome: Outcome) -> Counter | None:
    """Add one to the counter's ``done`` or ``failed`` (compare-and-set, again if raced)."""
    while True:
        found = await get_counter(kv, batch_id)
        if found is None:
            return None  # not released: nothing to count yet
        counter, revision = found
        counter = counter.credited(outcome)
        try:
            await kv.update(counter_key(batch_id), counter.to_json(), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return counter


async def _recount(kv: KeyValue, batch_id: str) -> Counter | None:
    """The counter, corrected from the outcomes themselves if a process died between
    creating an outcome and counting it."""
    found = await get_counter(kv, batch_id)
    if found is None:
        return None
    counter, revision = found
    names = await bus.kv_keys(kv, outcome_keys(batch_id))
    if len(names) <= counter.done + counter.failed:
        return counter
    values = []
    for name in names:
        with contextlib.suppress(KeyNotFoundError):  # deleted meanwhile: not an outcome
            values.append((await kv.get(name)).value)
    counter = counter.but(done=values.count(b"done"), failed=values.count(b"failed"))
    with contextlib.suppress(KeyWrongLastSequenceError):  # raced by a live count: next time
        await kv.update(counter_key(batch_id), counter.to_json(), last=revision)
    return counter


async def check(rt: Runtime, batch_id: str) -> float | None:
    """The batch's watchdog: release it at its deadline; release it again if the process that
    released it died before publishing everything; announce it if the one that finished it
    died before that. Returns when to look again (``None``: never, the batch is over)."""
    doc = await get(rt, batch_id)
    if doc is None:
        return None
    if doc.state != "done":
        doc = await keep_alive(rt, doc)
    recheck = min(_RECHECK_S, lifetime() / 4)  # often enough to keep its records alive
    if doc.state == "open":
        if doc.deadline is None:
            return recheck
        remaining = doc.deadline - time.time()
        if remaining > 0:
            return min(remaining, recheck)
        doc = await expire(rt, batch_id)
    if doc.state == "processing":
        if release_cut_short(doc):
            log.warning("batch %s: finishing a release that was cut short", batch_id)
            await release(rt, doc)
        counter = await _recount(await bucket(rt), batch_id)
        if counter and counter.settled:
            await finish(rt, batch_id, counter)
        return recheck
    return await announce(rt, doc, claimed=False)


async def handle(rt: Runtime, msg: Msg) -> float | None:
    """One message of the ``batches`` consumer; returns a delay to look again, or ``None``."""
    data = bus.decode(msg)
    if msg.subject == SUBJECT_CHECK:
        later = await check(rt, data["id"])
        stored = msg.metadata.timestamp
        age = (datetime.now(UTC) - stored).total_seconds() if stored else 0.0
        if later is not None and age + later > lifetime() / 2:
            # The stream would drop this watchdog at its age limit: a fresh one carries on.
            fresh = f"check:{data['id']}:{time.time_ns()}"
            await bus.publish(rt.js, SUBJECT_CHECK, {"id": data["id"]}, fresh)
            return None
        return later
    if msg.subject == SUBJECT_IMAGE_PROCESSED:
        return await finished(rt, data["key"], "done", data.get("etag"))
    if msg.subject == SUBJECT_IMAGE_FAILED:
        return await finished(rt, data["key"], "failed")
    return None


async def run_batches(rt: Runtime, stop: asyncio.Event) -> None:
    """The ``batches`` consumer: image outcomes credited to batches, deadlines enforced."""

    async def give_up(msg: Msg, error: PixpipeError, attempts: int) -> None:
        await dead_letter(rt, "batches", msg, error, attempts)

    await bus.consume(rt.js, "batches", lambda msg: handle(rt, msg), give_up,
                      retry=rt.settings.retry, concurrency=16, stop=stop)  # fmt: skip


__all__ = ["check", "finished", "handle", "run_batches"]
