"""Batches (orders): originals uploaded with ``?batch=ID`` wait until all ``expected`` are in,
or until the batch's deadline, and are then released together; ``pixpipe.batch.done`` fires
once, when every released original is done or failed.

All in the KV bucket ``pixpipe-batches``, every shared change made by compare-and-set on a
revision, so concurrent uploads and workers never lose an update and exactly one of them makes
each transition ``open → processing → done``:

- ``b.{id}``: the batch, with ``members`` (each original's etag, size and type; a duplicate
  upload of a key replaces its entry and counts once). Written per upload and per transition.
- ``m.{key}`` → ``{batch, etag}``: lets the ``batches`` consumer credit a processed or failed
  image to its batch without the worker knowing about batches.
- ``o.{id}.{key}``: an image's outcome, created once (a redelivered event finds it there);
  ``c.{id}``: the released/done/failed counter it bumps. Crediting an image costs a few small
  writes, whatever the size of the batch. The creator of the last outcome finishes the batch;
  the batch's watchdog (``check``) recounts the outcomes should a process die in between.

A batch holds up to ~10,000 keys (the bus's 1 MB value limit on ``b.{id}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nats.js.errors import (
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)

from .. import bus
from ..bus import kv_name
from ..errors import Kind, PixpipeError
from ..events import SUBJECT_IMAGE_FAILED, SUBJECT_IMAGE_PROCESSED, BatchDone, ObjectCreated
from ..jobs.state import ImageState
from ..logs import log
from .deadletters import dead_letter
from .runtime import Runtime

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.kv import KeyValue

SUBJECT_CHECK = "pixpipe.batch.check"
BATCH_STATES = ("open", "processing", "done")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_RECHECK_S = 60.0  # an unfinished batch is looked at again at least this often
_PUBLISH_AHEAD = 64  # object.created publishes in flight while releasing a batch
_CLAIM_S = 30.0  # how long a claim to announce a batch holds before another may take it

Doc = dict[str, Any]
_BUCKETS: weakref.WeakKeyDictionary[Any, KeyValue] = weakref.WeakKeyDictionary()


class BatchError(ValueError):
    """A batch request that cannot be met; ``status`` is the HTTP status that says why."""

    status = 400


class NoBatch(BatchError):
    status = 404


class BatchConflict(BatchError):
    status = 409


def validate_id(batch_id: str) -> str:
    if not _ID.match(batch_id):
        raise BatchError(
            "batch id must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a "
            f"letter or digit (got {batch_id!r})"
        )
    return batch_id


def _doc_key(batch_id: str) -> str:
    return f"b.{kv_name(batch_id)}"


def _member_key(key: str) -> str:
    return f"m.{kv_name(key)}"


def _counter_key(batch_id: str) -> str:
    return f"c.{kv_name(batch_id)}"


def _outcome_key(batch_id: str, key: str) -> str:
    return f"o.{kv_name(batch_id)}.{kv_name(key)}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def bucket(rt: Runtime) -> KeyValue:
    """The ``pixpipe-batches`` bucket (looked up once per connection, not per call)."""
    kv = _BUCKETS.get(rt.js)
    if kv is None:
        kv = _BUCKETS[rt.js] = await rt.js.key_value(bus.BATCHES_BUCKET)
    return kv


def public(doc: Doc, counter: Doc | None = None) -> dict[str, Any]:
    """The batch as clients see it: ``{id, expected, received, state, done, failed,
    missing?, deadline?}``; ``missing`` only once a deadline released it short."""
    tally = doc if doc["state"] == "done" else counter or {}
    out: dict[str, Any] = {
        "id": doc["id"], "expected": doc["expected"], "received": len(doc["members"]),
        "state": doc["state"], "done": tally.get("done", 0), "failed": tally.get("failed", 0),
    }  # fmt: skip
    if doc.get("missing") is not None:
        out["missing"] = doc["missing"]
    if doc.get("deadline") is not None:
        out["deadline"] = datetime.fromtimestamp(doc["deadline"], UTC).isoformat()
    return out


async def status(rt: Runtime, batch_id: str) -> dict[str, Any] | None:
    """``public`` for a batch id, with its live counts; ``None`` if there is no such batch."""
    doc = await get(rt, batch_id)
    if doc is None:
        return None
    counter = await _counter(await bucket(rt), batch_id)
    return public(doc, counter[0] if counter else None)


async def get(rt: Runtime, batch_id: str) -> Doc | None:
    try:
        entry = await (await bucket(rt)).get(_doc_key(validate_id(batch_id)))
    except KeyNotFoundError:
        return None
    return json.loads(entry.value) if entry.value else None


async def _change(kv: KeyValue, batch_id: str, change: Callable[[Doc], Doc | None]) -> Doc:
    """Apply ``change`` to the batch by compare-and-set, again until no one raced us.
    ``change`` edits the document and returns it, or returns ``None`` (having changed
    nothing) to leave it as it is."""
    while True:
        try:
            entry = await kv.get(_doc_key(batch_id))
        except KeyNotFoundError:
            raise NoBatch(f"no batch {batch_id!r}") from None
        doc: Doc = json.loads(entry.value or b"{}")
        new = change(doc)
        if new is None:
            return doc
        new["updated"] = _now()
        try:
            await kv.update(_doc_key(batch_id), json.dumps(new).encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            continue  # someone else changed it first: look again
        return new


async def create(rt: Runtime, batch_id: str, expected: int, deadline_s: float | None = None) -> Doc:
    """Open a batch. Asking again with the same ``expected`` returns it; otherwise 409."""
    validate_id(batch_id)
    if expected < 1:
        raise BatchError(f"expected must be at least 1 (got {expected})")
    deadline = time.time() + deadline_s if deadline_s is not None else None
    doc: Doc = {
        "id": batch_id, "expected": expected, "state": "open", "deadline": deadline,
        "members": {}, "created": _now(), "announced": False,
    }  # fmt: skip
    kv = await bucket(rt)
    try:
        await kv.create(_doc_key(batch_id), json.dumps(doc).encode())
    except KeyWrongLastSequenceError:
        old = await get(rt, batch_id)
        if old is None or old["expected"] != expected:
            raise BatchConflict(f"batch {batch_id!r} exists with other settings") from None
        return old
    # The batch's watchdog: enforces the deadline, and finishes a release or an announcement
    # that a crashed process left half done (see ``check``).
    await bus.publish(rt.js, SUBJECT_CHECK, {"id": batch_id}, f"check:{batch_id}")
    return doc


async def reserve(rt: Runtime, batch_id: str, key: str) -> Doc:
    """Before an original is stored for a batch: the batch must be open, and the key is
    marked held (state ``pending`` with ``batch``), which ``ingest`` does not announce."""
    doc = await get(rt, batch_id)
    if doc is None:
        raise NoBatch(f"no batch {batch_id!r} (create it with POST /v1/batches)")
    if doc["state"] != "open":
        raise BatchConflict(f"batch {batch_id!r} is {doc['state']}: it takes no more uploads")
    await rt.states.put(ImageState(key=key, state="pending", batch=batch_id))
    return doc


def held(state: ImageState | None, etag: str | None) -> bool:
    """Whether an image waits for its batch (so announcing it now would jump the queue)."""
    if not state or state.state != "pending" or not state.batch:
        return False
    return state.etag in (None, etag)


async def hold(rt: Runtime, batch_id: str, key: str) -> Doc:
    """Record a stored original in its batch instead of announcing it; the upload that
    completes the batch releases it. An original re-uploaded under the same key counts once."""
    meta = await rt.stores.originals.head(key)
    if meta is None:
        raise PixpipeError(Kind.MISSING, f"{key} is not in the originals store")
    etag = meta.etag
    kv = await bucket(rt)
    await rt.states.put(ImageState(key=key, state="pending", etag=etag, batch=batch_id))
    await kv.put(_member_key(key), json.dumps({"batch": batch_id, "etag": etag}).encode())
    member = {"etag": etag, "size": meta.size, "type": meta.content_type}
    released = [False]  # set by the attempt that was written

    def add(doc: Doc) -> Doc | None:
        released[0] = False
        if doc["state"] != "open":
            raise BatchConflict(f"batch {batch_id!r} is {doc['state']}: it takes no more uploads")
        if doc["members"].get(key) == member:
            return None
        doc["members"][key] = member
        if len(doc["members"]) >= doc["expected"]:
            doc["state"], doc["released"] = "processing", time.time()
            released[0] = True
        return doc

    try:
        doc = await _change(kv, batch_id, add)
    except BatchError:
        await kv.delete(_member_key(key))  # not in this batch after all, nor held
        await rt.states.put(ImageState(key=key, state="pending", etag=etag))
        raise
    if released[0]:
        await release(rt, doc)
    return doc


async def release(rt: Runtime, doc: Doc) -> None:
    """Publish ``object.created`` for every original of the batch (the usual dedup ids, so a
    second release of the same batch is harmless), then note it in the batch; an empty batch
    is done at once."""
    kv = await bucket(rt)
    counter = {"released": len(doc["members"]), "done": 0, "failed": 0}
    with contextlib.suppress(KeyWrongLastSequenceError):  # a second release: it is there
        await kv.create(_counter_key(doc["id"]), json.dumps(counter).encode())
    if not doc["members"]:
        await _finish(rt, doc["id"], counter)
        return
    log.info("batch %s released: %d originals", doc["id"], len(doc["members"]))
    slots = asyncio.Semaphore(_PUBLISH_AHEAD)

    async def one(key: str, member: Doc) -> None:
        async with slots:
            event = ObjectCreated(
                key=key, size=member["size"], etag=member["etag"],
                content_type=member["type"],
            )  # fmt: skip
            await bus.publish_event(rt.js, event)

    await asyncio.gather(*(one(k, m) for k, m in doc["members"].items()))

    def published(current: Doc) -> Doc | None:
        if current.get("published"):
            return None
        current["published"] = True
        return current

    await _change(kv, doc["id"], published)


async def expire(rt: Runtime, batch_id: str) -> Doc:
    """Past its deadline: release an open batch with what it has, noting how many are missing."""

    released = [False]

    def close(doc: Doc) -> Doc | None:
        released[0] = False
        if doc["state"] != "open":
            return None
        doc["state"], doc["released"] = "processing", time.time()
        doc["missing"] = doc["expected"] - len(doc["members"])
        released[0] = True
        return doc

    doc = await _change(await bucket(rt), batch_id, close)
    if released[0]:
        log.info("batch %s deadline: releasing %d, %d missing", batch_id,
                 len(doc["members"]), doc["missing"])  # fmt: skip
        await release(rt, doc)
    return doc


async def finished(rt: Runtime, key: str, outcome: str, etag: str | None = None) -> float | None:
    """Credit an image's outcome to its batch (if it is in one); the last one finishes the
    batch and announces it. Returns a delay to look again when another process's
    announcement of this batch may still be under way."""
    kv = await bucket(rt)
    try:
        entry = await kv.get(_member_key(key))
    except KeyNotFoundError:
        return None
    index = json.loads(entry.value or b"{}")
    batch_id = index.get("batch")
    if not batch_id or (etag and index.get("etag") and etag != index["etag"]):
        return None  # in no batch, or an older upload of the key
    try:
        await kv.create(_outcome_key(batch_id, key), outcome.encode())
    except KeyWrongLastSequenceError:
        return None  # credited already (a redelivery)
    counter = await _bump(kv, batch_id, outcome)
    if counter is None or counter["done"] + counter["failed"] < counter["released"]:
        return None
    return await _finish(rt, batch_id, counter)


async def _counter(kv: KeyValue, batch_id: str) -> tuple[Doc, int] | None:
    try:
        entry = await kv.get(_counter_key(batch_id))
    except KeyNotFoundError:
        return None
    return json.loads(entry.value or b"{}"), entry.revision or 0


async def _bump(kv: KeyValue, batch_id: str, outcome: str) -> Doc | None:
    """Add one to the counter's ``done`` or ``failed`` (compare-and-set, again if raced)."""
    while True:
        found = await _counter(kv, batch_id)
        if found is None:
            return None  # not released: nothing to count yet
        counter, revision = found
        counter[outcome] += 1
        try:
            await kv.update(_counter_key(batch_id), json.dumps(counter).encode(), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return counter


async def _recount(kv: KeyValue, batch_id: str) -> Doc | None:
    """The counter, corrected from the outcomes themselves if a process died between
    creating an outcome and counting it."""
    found = await _counter(kv, batch_id)
    if found is None:
        return None
    counter, revision = found
    names = await _keys(kv, f"o.{kv_name(batch_id)}.>")
    if len(names) <= counter["done"] + counter["failed"]:
        return counter
    values = [(await kv.get(name)).value for name in names]
    counter["done"], counter["failed"] = values.count(b"done"), values.count(b"failed")
    with contextlib.suppress(KeyWrongLastSequenceError):  # raced by a live count: next time
        await kv.update(_counter_key(batch_id), json.dumps(counter).encode(), last=revision)
    return counter


async def _keys(kv: KeyValue, pattern: str) -> list[str]:
    """The keys matching a subject pattern (``kv.keys`` would read the whole bucket)."""
    watcher = await kv.watch(pattern, meta_only=True, ignore_deletes=True)
    names = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of what is there now
                break
            names.append(entry.key)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return names


async def _finish(rt: Runtime, batch_id: str, counter: Doc) -> float | None:
    """``processing`` → ``done`` with the final counts; whoever writes that change holds
    the claim to announce it."""
    ended = [False]

    def complete(doc: Doc) -> Doc | None:
        ended[0] = False
        if doc["state"] != "processing":
            return None
        doc["state"], doc["finished"], doc["announcing"] = "done", _now(), time.time()
        doc["done"], doc["failed"] = counter["done"], counter["failed"]
        ended[0] = True
        return doc

    doc = await _change(await bucket(rt), batch_id, complete)
    return await _announce(rt, doc, claimed=ended[0])


async def _announce(rt: Runtime, doc: Doc, *, claimed: bool) -> float | None:
    """Publish ``batch.done`` for a done batch, once: only the holder of the claim publishes
    (the claim is taken by compare-and-set), and ``announced`` records that it went out. A
    claim left by a process that died before publishing lapses after ``_CLAIM_S``; a late
    second publish is still dropped by its message id (``batch:{id}``)."""
    if doc["state"] != "done" or doc.get("announced"):
        return None
    kv = await bucket(rt)
    if not claimed:
        won = [False]

        def claim(current: Doc) -> Doc | None:
            won[0] = False
            if current.get("announced") or time.time() - current["announcing"] < _CLAIM_S:
                return None
            current["announcing"], won[0] = time.time(), True
            return current

        doc = await _change(kv, doc["id"], claim)
        if not won[0]:
            return None if doc.get("announced") else _CLAIM_S
    done, failed = doc["done"], doc["failed"]
    await bus.publish_event(rt.js, BatchDone(id=doc["id"], done=done, failed=failed))

    def mark(current: Doc) -> Doc | None:
        if current.get("announced"):
            return None
        current["announced"] = True
        return current

    await _change(kv, doc["id"], mark)
    log.info("batch %s done: %d done, %d failed", doc["id"], done, failed)
    return None


async def check(rt: Runtime, batch_id: str) -> float | None:
    """The batch's watchdog: release it at its deadline; release it again if the process that
    released it died before publishing everything; announce it if the one that finished it
    died before that. Returns when to look again (``None``: never, the batch is over)."""
    doc = await get(rt, batch_id)
    if doc is None:
        return None
    if doc["state"] == "open":
        if doc["deadline"] is None:
            return _RECHECK_S
        remaining = float(doc["deadline"]) - time.time()
        if remaining > 0:
            return min(remaining, _RECHECK_S)
        doc = await expire(rt, batch_id)
    if doc["state"] == "processing":
        if not doc.get("published") and time.time() - doc["released"] > _CLAIM_S:
            log.warning("batch %s: finishing a release that was cut short", batch_id)
            await release(rt, doc)
        counter = await _recount(await bucket(rt), batch_id)
        if counter and counter["done"] + counter["failed"] >= counter["released"]:
            await _finish(rt, batch_id, counter)
        return _RECHECK_S
    return await _announce(rt, doc, claimed=False)


async def handle(rt: Runtime, msg: Msg) -> float | None:
    """One message of the ``batches`` consumer; returns a delay to look again, or ``None``."""
    data = bus.decode(msg)
    if msg.subject == SUBJECT_CHECK:
        return await check(rt, data["id"])
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


__all__ = [
    "BATCH_STATES",
    "SUBJECT_CHECK",
    "BatchConflict",
    "BatchError",
    "NoBatch",
    "check",
    "create",
    "expire",
    "finished",
    "get",
    "held",
    "hold",
    "public",
    "release",
    "reserve",
    "run_batches",
    "status",
]
