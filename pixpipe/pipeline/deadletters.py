"""Dead letters: messages a role gave up on, kept with why under ``_deadletters/{role}/`` in
quarantine; and the ``dead-letters`` role, which reads the server's "max deliveries"
advisories (a worker killed mid-image every time, say) so that no message is dropped
unrecorded: a given-up ``object.created`` becomes a failed image like any other."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import bus
from ..errors import Kind, PixpipeError
from ..events import ObjectCreated
from ..jobs import variants
from ..jobs.variants import JSON
from ..logs import log
from ..storage import dead_letter_key
from .runtime import Runtime

if TYPE_CHECKING:
    import asyncio

    from nats.aio.msg import Msg



async def dead_letter(rt: Runtime, role: str, msg: Msg, error: PixpipeError, attempts: int) -> None:
    """Keep a message ``role`` gave up on, with why."""
    seq = msg.metadata.sequence.stream if msg.metadata else 0
    record = {
        "subject": msg.subject, "sequence": seq, "attempts": attempts, **error.to_dict(),
        "event": json.loads(msg.data or b"{}"),
    }  # fmt: skip
    await keep_dead_letter(rt, role, seq, record)
    log.warning("%s gave up on message %s: %s", role, seq, error)


async def keep_dead_letter(rt: Runtime, role: str, seq: int, record: dict[str, object]) -> None:
    key = dead_letter_key(role, seq)
    await rt.stores.quarantine.put(key, json.dumps(record).encode(), content_type=JSON)


async def _no_render(data: bytes, recipe: object) -> object:
    raise AssertionError("recording a failure renders nothing")


async def run_dead_letters(rt: Runtime, stop: asyncio.Event) -> None:
    """The ``dead-letters`` role, on the kept advisories."""
    ctx = rt.context(_no_render)  # type: ignore[arg-type]

    async def handle(msg: Msg) -> None:
        dead = bus.DeadLetter.from_advisory(msg.data)
        if dead.reason == "terminated":
            return  # we terminate only after recording the failure ourselves
        subject, payload = await bus.fetch_dead_letter(rt.js, dead)
        message = f"gave up after {dead.deliveries} deliveries ({dead.consumer})"
        if dead.consumer == "variants":
            event = ObjectCreated.model_validate(payload)
            state = await rt.states.get(event.key)
            if not (state and state.state == "failed" and state.etag == event.etag):
                error = PixpipeError(Kind.TRANSIENT, message)
                await variants.fail(ctx, event.key, error, dead.deliveries, etag=event.etag)
            return
        record = {"subject": subject, "sequence": dead.stream_seq, "kind": "transient",
                  "message": message, "event": payload}  # fmt: skip
        await keep_dead_letter(rt, dead.consumer, dead.stream_seq, record)

    async def give_up(msg: Msg, error: PixpipeError, attempts: int) -> None:
        log.error("dropped an unreadable dead-letter advisory: %s", error)

    await bus.consume(rt.js, "dead-letters", handle, give_up, retry=rt.settings.retry,
                      concurrency=1, stop=stop)  # fmt: skip


__all__ = ["dead_letter", "keep_dead_letter", "run_dead_letters"]
