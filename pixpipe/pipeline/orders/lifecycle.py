"""A batch's way through ``open → processing → done``: opened, uploads reserved and held,
released when complete (or at its deadline), finished and announced once.

Every change to ``b.{id}`` is made by compare-and-set on its revision (``_change``), so
concurrent uploads and workers never lose an update, and exactly one of them makes each
transition: that one then owns what follows it (publishing the members, announcing the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ... import bus
from ...errors import Kind, PixpipeError
from ...events import BatchDone, ObjectCreated
from ...jobs.state import ImageState
from ...logs import log
from ..runtime import Runtime
from .documents import (
    Batch,
    BatchConflict,
    BatchError,
    BatchState,
    Counter,
    Member,
    MemberIndex,
    NoBatch,
    batch_key,
    bucket,
    counter_key,
    get,
    get_counter,
    member_key,
    validate_id,
)

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

SUBJECT_CHECK = "pixpipe.batch.check"
_PUBLISH_AHEAD = 64  # object.created publishes in flight while releasing a batch
_CLAIM_S = 30.0  # how long a claim (to release, to announce) holds before another may take it


def _now() -> datetime:
    return datetime.now(UTC)


class Changed(NamedTuple):
    """What one ``_change`` found and left; ``after is before`` when it changed nothing."""

    before: Batch
    after: Batch

    @property
    def written(self) -> bool:
        return self.after is not self.before

    def entered(self, state: BatchState) -> bool:
        """Whether this change moved the batch into ``state``, so its caller owns what
        follows (no one else can have made the same transition)."""
        return self.before.state != state and self.after.state == state


async def _change(kv: KeyValue, batch_id: str, change: Callable[[Batch], Batch | None]) -> Changed:
    """Apply ``change`` to the batch by compare-and-set, again until no one raced us.
    ``change`` returns the new document (``doc.but(...)``), or ``None`` to leave it as it is."""
    while True:
        try:
            entry = await kv.get(batch_key(batch_id))
        except KeyNotFoundError:
            raise NoBatch(f"no batch {batch_id!r}") from None
        if not entry.value:
            raise NoBatch(f"no batch {batch_id!r}")
        doc = Batch.from_json(entry.value)
        new = change(doc)
        if new is None:
            return Changed(doc, doc)
        try:
            await kv.update(batch_key(batch_id), new.to_json(), last=entry.revision)
        except KeyWrongLastSequenceError:
            continue  # someone else changed it first: look again
        return Changed(doc, new)


async def create(
    rt: Runtime, batch_id: str, expected: int, deadline_s: float | None = None
) -> Batch:
    """Open a batch. Asking again with the same ``expected`` returns it; otherwise 409."""
    validate_id(batch_id)
    if expected < 1:
        raise BatchError(f"expected must be at least 1 (got {expected})")
    deadline = time.time() + deadline_s if deadline_s is not None else None
    doc = Batch(id=batch_id, expected=expected, state="open", deadline=deadline)
    kv = await bucket(rt)
    try:
        await kv.create(batch_key(batch_id), doc.to_json())
    except KeyWrongLastSequenceError:
        old = await get(rt, batch_id)
        if old is None or old.expected != expected:
            raise BatchConflict(f"batch {batch_id!r} exists with other settings") from None
        return old
    # The batch's watchdog: enforces the deadline, and finishes a release or an announcement
    # that a crashed process left half done (see ``outcomes.check``).
    await bus.publish(rt.js, SUBJECT_CHECK, {"id": batch_id}, f"check:{batch_id}")
    return doc


async def reserve(rt: Runtime, batch_id: str, key: str) -> Batch:
    """Before an original is stored for a batch: the batch must be open, and the key is
    marked held (state ``pending`` with ``batch``), which ``ingest`` does not announce."""
    doc = await get(rt, batch_id)
    if doc is None:
        raise NoBatch(f"no batch {batch_id!r} (create it with POST /v1/batches)")
    if doc.state != "open":
        raise BatchConflict(f"batch {batch_id!r} is {doc.state}: it takes no more uploads")
    await rt.states.put(ImageState(key=key, state="pending", batch=batch_id))
    return doc


def held(state: ImageState | None, etag: str | None) -> bool:
    """Whether an image waits for its batch (so announcing it now would jump the queue)."""
    if not state or state.state != "pending" or not state.batch:
        return False
    return state.etag in (None, etag)


async def hold(rt: Runtime, batch_id: str, key: str) -> Batch:
    """Record a stored original in its batch instead of announcing it; the upload that
    completes the batch releases it. An original re-uploaded under the same key counts once."""
    meta = await rt.stores.originals.head(key)
    if meta is None:
        raise PixpipeError(Kind.MISSING, f"{key} is not in the originals store")
    etag = meta.etag
    kv = await bucket(rt)
    await rt.states.put(ImageState(key=key, state="pending", etag=etag, batch=batch_id))
    await kv.put(member_key(key), MemberIndex(batch=batch_id, etag=etag).to_json())
    member = Member(etag=etag, size=meta.size, type=meta.content_type)

    def add(doc: Batch) -> Batch | None:
        if doc.state != "open":
            raise BatchConflict(f"batch {batch_id!r} is {doc.state}: it takes no more uploads")
        if doc.members.get(key) == member:
            return None
        members = {**doc.members, key: member}
        if len(members) < doc.expected:
            return doc.but(members=members)
        return doc.but(members=members, state="processing", released=time.time())

    try:
        change = await _change(kv, batch_id, add)
    except BatchError:
        await kv.delete(member_key(key))  # not in this batch after all, nor held
        await rt.states.put(ImageState(key=key, state="pending", etag=etag))
        raise
    if change.entered("processing"):
        await release(rt, change.after)
    return change.after


async def release(rt: Runtime, doc: Batch) -> None:
    """Publish ``object.created`` for every original of the batch (the usual dedup ids, so a
    second release of the same batch is harmless), then note it in the batch; an empty batch
    is done at once."""
    kv = await bucket(rt)
    counter = Counter(released=len(doc.members))
    with contextlib.suppress(KeyWrongLastSequenceError):  # a second release: it is there
        await kv.create(counter_key(doc.id), counter.to_json())
    if not doc.members:
        await finish(rt, doc.id, counter)
        return
    log.info("batch %s released: %d originals", doc.id, len(doc.members))
    slots = asyncio.Semaphore(_PUBLISH_AHEAD)

    async def one(key: str, member: Member) -> None:
        async with slots:
            event = ObjectCreated(
                key=key, size=member.size, etag=member.etag, content_type=member.type
            )
            await bus.publish_event(rt.js, event)

    await asyncio.gather(*(one(k, m) for k, m in doc.members.items()))

    def published(current: Batch) -> Batch | None:
        return None if current.published else current.but(published=True)

    await _change(kv, doc.id, published)


def release_cut_short(doc: Batch) -> bool:
    """Whether the batch was released by a process that died before publishing every
    member (its claim on the release has lapsed), so it must be released again."""
    if doc.state != "processing" or doc.published:
        return False
    return time.time() - (doc.released or 0.0) > _CLAIM_S


async def expire(rt: Runtime, batch_id: str) -> Batch:
    """Past its deadline: release an open batch with what it has, noting how many are missing."""

    def close(doc: Batch) -> Batch | None:
        if doc.state != "open":
            return None
        missing = doc.expected - len(doc.members)
        return doc.but(state="processing", released=time.time(), missing=missing)

    change = await _change(await bucket(rt), batch_id, close)
    doc = change.after
    if change.entered("processing"):
        log.info("batch %s deadline: releasing %d, %d missing", batch_id,
                 len(doc.members), doc.missing)  # fmt: skip
        await release(rt, doc)
    return doc


async def finish(rt: Runtime, batch_id: str, counter: Counter) -> float | None:
    """``processing`` → ``done`` with the final counts; whoever writes that change holds
    the claim to announce it. Returns ``announce``'s delay to look again."""

    def complete(doc: Batch) -> Batch | None:
        if doc.state != "processing":
            return None
        return doc.but(
            state="done", finished=_now(), announcing=time.time(),
            done=counter.done, failed=counter.failed,
        )  # fmt: skip

    change = await _change(await bucket(rt), batch_id, complete)
    return await announce(rt, change.after, claimed=change.entered("done"))


async def announce(rt: Runtime, doc: Batch, *, claimed: bool) -> float | None:
    """Publish ``batch.done`` for a done batch, once: only the holder of the claim publishes
    (the claim is taken by compare-and-set), and ``announced`` records that it went out. A
    claim left by a process that died before publishing lapses after ``_CLAIM_S``; a late
    second publish is still dropped by its message id (``batch:{id}``)."""
    if doc.state != "done" or doc.announced:
        return None
    kv = await bucket(rt)
    if not claimed:

        def claim(current: Batch) -> Batch | None:
            if current.announced or time.time() - (current.announcing or 0.0) < _CLAIM_S:
                return None
            return current.but(announcing=time.time())

        change = await _change(kv, doc.id, claim)
        doc = change.after
        if not change.written:
            return None if doc.announced else _CLAIM_S
    await bus.publish_event(rt.js, BatchDone(id=doc.id, done=doc.done, failed=doc.failed))

    def mark(current: Batch) -> Batch | None:
        return None if current.announced else current.but(announced=True)

    await _change(kv, doc.id, mark)
    log.info("batch %s done: %d done, %d failed", doc.id, doc.done, doc.failed)
    return None


def lifetime() -> float:
    """How long the bus keeps a batch's records and its watchdog message unless they are
    written again (the KV bucket's TTL, the stream's age limit)."""
    return bus.topology.MAX_AGE_S


async def keep_alive(rt: Runtime, doc: Batch) -> Batch:
    """Write the batch and its members' index again once they are half their ``lifetime``
    old: a deadline (up to 30 days) may be longer than that, and an unfinished batch must
    never lose its records to the TTL."""
    age = (_now() - doc.updated).total_seconds() if doc.updated else lifetime()
    if age < lifetime() / 2:
        return doc
    kv = await bucket(rt)
    change = await _change(kv, doc.id, lambda current: current.but())
    for key, member in change.after.members.items():
        await kv.put(member_key(key), MemberIndex(batch=doc.id, etag=member.etag).to_json())
    if (found := await get_counter(kv, doc.id)) is not None:
        counter, revision = found
        with contextlib.suppress(KeyWrongLastSequenceError):  # a live count wrote it anyway
            await kv.update(counter_key(doc.id), counter.to_json(), last=revision)
    log.info("batch %s: records kept alive (%d members)", doc.id, len(change.after.members))
    return change.after


__all__ = [
    "SUBJECT_CHECK",
    "announce",
    "create",
    "expire",
    "finish",
    "held",
    "hold",
    "keep_alive",
    "lifetime",
    "release",
    "release_cut_short",
    "reserve",
]
