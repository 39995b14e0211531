"""The variants worker: ``object.created`` → fetch → render → put every variant → state →
``image.processed``. At-least-once delivery made safe by idempotence: an original whose state
already records this etag and this recipe is skipped.

Permanent failures move the original to quarantine (copy first, then delete) with
``{key}.error.json``; transient ones are retried by the bus, and the last attempt is recorded
the same way (the original stays where it is).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from . import bus
from .errors import Kind, PixpipeError
from .events import ImageFailed, ImageProcessed, ObjectCreated, VariantInfo
from .pool import RenderPool
from .recipe import Recipe, recipe_id
from .results import quarantine, store_variants
from .service import Runtime, consume, heartbeat, keep_dead_letter, log

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from .imaging import Rendered


class Worker:
    """Renders originals pulled from the ``variants`` consumer, in a pool of processes."""

    def __init__(self, rt: Runtime, pool: RenderPool, recipe: Recipe | None = None) -> None:
        self.rt = rt
        self.pool = pool
        self.recipe = recipe or rt.recipe
        self.recipe_id = recipe_id(self.recipe)
        ack_wait = bus.consumer_config("variants", ("x",), rt.settings.retry).ack_wait or 30
        self.beat_every = max(1.0, ack_wait / 3)

    async def run(self, stop: asyncio.Event) -> None:
        # Twice the processes in hand: the next original downloads while the pool renders.
        await consume(
            self.rt, "variants", self.handle, self.give_up,
            concurrency=2 * self.pool.workers, stop=stop,
        )  # fmt: skip

    async def handle(self, msg: Msg) -> None:
        event = ObjectCreated.model_validate_json(msg.data)
        seq = msg.metadata.sequence.stream if msg.metadata.sequence else None
        state = await self.rt.states.get(event.key)
        if state and self._already(state, event):
            log.info("skip %s: already %s", event.key, state["state"])
            if state["state"] == "done" and seq is not None and state.get("event_seq") == seq:
                # This very message made it done, yet comes again: its run lost the bus after
                # storing everything, perhaps before its event got out. Announce again; the
                # stream drops it, by id, if it did get out.
                await bus.publish_event(self.rt.js, processed_event(state))
            return
        async with heartbeat(msg, self.beat_every):
            await self.process(event, msg.metadata.num_delivered or 1, event_seq=seq)

    def _already(self, state: dict[str, Any], event: ObjectCreated) -> bool:
        same = state.get("etag") == event.etag and state.get("recipe") == self.recipe_id
        return same and state["state"] in ("done", "failed")

    async def process(
        self, event: ObjectCreated, attempt: int, *, event_seq: int | None = None
    ) -> dict[str, Any]:
        """Render one original and store every variant; returns the new state document.
        ``event_seq``: the stream sequence of the ``object.created`` being handled."""
        key, states = event.key, self.rt.states
        started = time.perf_counter()
        await states.update(key, "processing", etag=event.etag, attempts=attempt)
        data = await self.rt.stores.originals.get(key)
        rendered: Rendered = await self.pool.render(data, self.recipe)
        infos = await store_variants(self.rt.stores, self.recipe, key, rendered)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        doc = await states.set(
            key, "done", etag=event.etag, recipe=self.recipe_id, attempts=attempt,
            event_seq=event_seq,
            variants={i.name: i.model_dump() for i in infos}, duration_ms=duration_ms,
            placeholder=rendered.placeholder, dominant=rendered.dominant,
            source={"format": rendered.source.format, "width": rendered.source.width,
                    "height": rendered.source.height},
        )  # fmt: skip
        processed = ImageProcessed(
            key=key, variants=tuple(infos), duration_ms=duration_ms, etag=event.etag
        )
        await bus.publish_event(self.rt.js, processed)
        log.info("done %s in %.0f ms", key, duration_ms)
        return doc

    async def give_up(self, msg: Msg, error: PixpipeError, attempts: int) -> None:
        event = ObjectCreated.model_validate_json(msg.data)
        await fail(self.rt, event.key, error, attempts, etag=event.etag, recipe=self.recipe_id)


def processed_event(state: dict[str, Any]) -> ImageProcessed:
    """The ``image.processed`` a ``done`` state document stands for."""
    variants = tuple(VariantInfo(**info) for info in state["variants"].values())
    return ImageProcessed(
        key=state["key"], variants=variants, duration_ms=state.get("duration_ms") or 0.0,
        etag=state.get("etag"),
    )  # fmt: skip


async def fail(
    rt: Runtime, key: str, error: PixpipeError, attempts: int, **fields: Any
) -> None:
    """Record a failure: quarantine (moving the original if the failure is permanent),
    state ``failed``, ``image.failed``. Nothing is deleted before its copy is safe."""
    moved = await quarantine(rt.stores, key, error, attempts)
    await rt.states.update(
        key, "failed", error=error.to_dict(), attempts=attempts, quarantined=moved, **fields
    )
    failed = ImageFailed(key=key, kind=error.kind.value, message=error.message, attempts=attempts)
    await bus.publish_event(rt.js, failed)
    log.warning("failed %s: %s", key, error)


async def run_dead_letters(rt: Runtime, stop: asyncio.Event) -> None:
    """Messages the server gave up on (max deliveries, e.g. a worker killed mid-image each
    time) become failures too: read from the kept advisories, never silently dropped."""
    sub = await bus.dead_letters(rt.js)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(1, timeout=1.0)
        except Exception:  # nothing yet, or the bus is reconnecting
            continue
        for msg in msgs:
            try:
                await _dead_letter(rt, bus.DeadLetter.from_advisory(msg.data))
            except PixpipeError as exc:
                log.warning("dead letter not recorded yet: %s", exc)
                await msg.nak(delay=5)
                continue
            await msg.ack()


async def _dead_letter(rt: Runtime, dead: bus.DeadLetter) -> None:
    if dead.reason == "terminated":
        return  # we terminate only after recording the failure ourselves
    subject, payload = await bus.fetch_dead_letter(rt.js, dead)
    message = f"gave up after {dead.deliveries} deliveries ({dead.consumer})"
    if dead.consumer == "variants":
        event = ObjectCreated.model_validate(payload)
        state = await rt.states.get(event.key)
        if not (state and state["state"] == "failed" and state.get("etag") == event.etag):
            error = PixpipeError(Kind.TRANSIENT, message)
            await fail(rt, event.key, error, dead.deliveries, etag=event.etag)
        return
    record = {"subject": subject, "sequence": dead.stream_seq, "kind": "transient",
              "message": message, "event": payload}  # fmt: skip
    await keep_dead_letter(rt, dead.consumer, dead.stream_seq, record)
