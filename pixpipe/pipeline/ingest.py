"""Ingest: every way an original arrives becomes one ``pixpipe.object.created`` event.

From the upload endpoint, from files dropped into a local originals folder (watchfiles), and
from S3/MinIO bucket notifications (on the NATS subject ``pixpipe.ingest.s3`` or at
``POST /v1/events/s3``). Events carry ``Nats-Msg-Id`` = key@etag, so the same object
announced twice (an upload also seen by the folder watcher) is processed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.errors import Error as NatsError
from watchfiles import Change, awatch

from .. import bus
from ..errors import Kind, PixpipeError
from ..events import ObjectCreated, objects_in
from ..jobs.state import ImageState
from ..logs import log
from ..storage import error_key, legacy_error_key, reserved
from .orders import held
from .runtime import Runtime

if TYPE_CHECKING:
    from nats.aio.msg import Msg

S3_SUBJECT = "pixpipe.ingest.s3"
_TEMP = re.compile(r"#\d+$")  # obstore's local store writes to `name#N` and renames


async def publish_created(rt: Runtime, event: ObjectCreated) -> ObjectCreated:
    """Mark the image pending (unless this very object is already known) and publish;
    an image held for its batch is left to the batch (``orders`` releases it).
    The bus being away is ``transient`` (the API answers 503 with ``Retry-After``)."""
    try:
        if await _mark_pending(rt, event):
            await bus.publish_event(rt.js, event)
            rt.announced[event.key] = event.etag
    except (NatsError, TimeoutError) as exc:
        if "maximum bytes" in str(exc).lower():
            message = "the bus is full: its event stream is at [bus] max_bytes; retry later"
            raise PixpipeError(Kind.TRANSIENT, message) from None
        raise PixpipeError(Kind.TRANSIENT, f"the bus is not reachable: {exc!r}") from None
    return event


async def _mark_pending(rt: Runtime, event: ObjectCreated) -> bool:
    """State ``pending`` for the announced version, only if it is the one in the store (a
    late notification of an older upload changes nothing); ``False`` if held for a batch.
    A key never seen (most uploads) takes its first state at once, without a read."""
    pending = ImageState(key=event.key, state="pending", etag=event.etag)
    if await rt.states.create(pending):
        return True
    state = await rt.states.get(event.key)  # the state before the store: see jobs/variants.py
    if held(state, event.etag):
        return False
    if state is not None and state.etag == event.etag:
        return True  # known already: announce again, the bus drops a duplicate
    if state is not None:
        meta = await rt.stores.originals.head(event.key)
        if meta is None or meta.etag != event.etag:
            return True  # not the current version: its worker will find it superseded
    allowed = {None, state.etag if state else None}
    await rt.states.change(event.key, lambda s: pending if s is None or s.etag in allowed else None)
    return True


async def announce(rt: Runtime, key: str) -> ObjectCreated:
    """Publish ``object.created`` for an original already in the store (unless this process
    announced this very version already: the bus has it)."""
    meta = await rt.stores.originals.head(key)
    if meta is None:
        raise PixpipeError(Kind.MISSING, f"{key} is not in the originals store")
    event = ObjectCreated(
        key=key, size=meta.size, etag=meta.etag, content_type=meta.content_type,
        time=meta.last_modified,
    )  # fmt: skip
    if meta.etag is not None and rt.announced.get(key) == meta.etag:
        return event
    return await publish_created(rt, event)


async def ingest_s3(rt: Runtime, payload: Any) -> list[ObjectCreated]:
    """An S3/MinIO/EventBridge notification (SNS/SQS-wrapped too) → published events, for the
    objects in the originals store (see :func:`events.objects_in`)."""
    events = [e for e in objects_in(rt.stores.originals.url, payload) if not reserved(e.key)]
    return [await publish_created(rt, e) for e in events]


def _dropped_key(root: Path, path: str) -> str | None:
    rel = Path(path).relative_to(root)
    if any(part.startswith(".") for part in rel.parts) or _TEMP.search(rel.name):
        return None
    if reserved(rel.as_posix()):
        return None  # pixpipe's own records, should a store share the folder
    file = Path(path)
    return rel.as_posix() if file.is_file() and not file.is_symlink() else None


async def watch_folder(rt: Runtime, stop: asyncio.Event) -> None:
    """Announce files dropped by hand into a local originals folder (and, at start, files
    that arrived while nothing was watching)."""
    root = rt.stores.originals.local_root
    if root is None:
        return
    root.mkdir(parents=True, exist_ok=True)
    await _announce_unknown(rt, root)
    later: set[asyncio.Task[None]] = set()
    async for changes in awatch(root, stop_event=stop, recursive=True):
        for key in sorted(_dropped_keys(root, changes)):
            if not await _announced(rt, key):
                task = asyncio.create_task(_announce_later(rt, key, stop))
                later.add(task)
                task.add_done_callback(later.discard)
    if later:
        await asyncio.wait(later, timeout=10)


def _dropped_keys(root: Path, changes: set[tuple[Change, str]]) -> set[str]:
    """The keys of the files a batch of changes names. A new folder is walked: inotify
    reports nothing of the files written into a folder before its watch was added (a folder
    made and filled at once, or moved in whole), so its creation is the only sign of them."""
    keys = set()
    for change, path in changes:
        if change == Change.deleted or Path(path).is_symlink():
            continue  # a link is never followed (a loop to a parent folder would never end)
        files = [path]
        if Path(path).is_dir():
            files = [os.path.join(top, name) for top, _, names in os.walk(path) for name in names]
        keys.update(key for file in files if (key := _dropped_key(root, file)))
    return keys


async def _announced(rt: Runtime, key: str) -> bool:
    """Announce a dropped file; ``False`` if the bus (or the store) is away for now."""
    try:
        await announce(rt, key)
    except PixpipeError as exc:
        if exc.kind is Kind.TRANSIENT:
            log.warning("could not announce dropped file %s yet: %s", key, exc)
            return False
        log.warning("could not announce dropped file %s: %s", key, exc)  # gone again
    except ValueError as exc:  # a bad key: nothing to retry
        log.warning("could not announce dropped file %s: %s", key, exc)
    except Exception as exc:  # the bus is away (reconnecting): try again
        log.warning("could not announce dropped file %s yet: %r", key, exc)
        return False
    return True


async def _announce_later(rt: Runtime, key: str, stop: asyncio.Event) -> None:
    """Keep trying, with backoff, until the bus is back: the file is in the store already,
    and nothing else would announce it before a restart."""
    delay = 1.0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set() or await _announced(rt, key):
            return
        delay = min(2 * delay, 30.0)


async def _announce_unknown(rt: Runtime, root: Path) -> None:
    async for page in rt.stores.originals.list():
        for meta in page:
            if _dropped_key(root, str(root / meta.key)) and await rt.states.get(meta.key) is None:
                await announce(rt, meta.key)


async def subscribe_s3(rt: Runtime) -> Any:
    """Bucket notifications published on ``pixpipe.ingest.s3`` (MinIO's NATS target)."""

    async def on_message(msg: Msg) -> None:
        try:
            await ingest_s3(rt, msg.data)
        except Exception as exc:
            log.warning("bad S3 notification on %s: %s", msg.subject, exc)

    return await rt.nc.subscribe(S3_SUBJECT, queue="ingest", cb=on_message)


class NotFailed(ValueError):
    """A retry asked for an image that is not in the failed state."""


async def retry_failed(rt: Runtime, key: str) -> dict[str, Any]:
    """Put a failed original back in line: out of quarantine if it is there, then a new
    ``object.created`` (its own message id, so the bus does not drop it as a duplicate)."""
    # Claim it first (compare-and-set ``failed`` → ``pending``): of two retries at once (a
    # double click), one moves the original back and the other is told it is under way.
    claimed = await rt.states.change(
        key, lambda s: s.but(state="pending") if s is not None and s.state == "failed" else None
    )
    if claimed is None:
        raise NotFailed(f"{key!r} has not failed")
    # The original, from quarantine if it is there. What goes out is the copy just made, not
    # a later look: once back, the folder watcher may announce it too and a quick worker fail
    # it again (and move it away) before this retry would look.
    kept = await rt.stores.quarantine.head(key)
    moved = kept is not None
    if kept is not None:
        etag = await rt.stores.quarantine.copy_to(rt.stores.originals, key)
        await rt.stores.quarantine.delete(key)
        meta = dataclasses.replace(kept, etag=etag)
    await rt.stores.quarantine.delete(error_key(key))
    await rt.stores.quarantine.delete(legacy_error_key(key))  # written before ``_pixpipe/``
    if kept is None and (meta := await rt.stores.originals.head(key)) is None:
        raise PixpipeError(Kind.MISSING, f"{key} is neither in quarantine nor in originals")
    event = ObjectCreated(key=key, size=meta.size, etag=meta.etag, content_type=meta.content_type)
    pending = ImageState(key=key, state="pending", etag=event.etag)
    # Unless a quick worker has already failed it again (a final state stays as it is).
    await rt.states.change(key, lambda s: pending if s is None or s.state == "pending" else None)
    # A moved-back original is a new object (new etag): its usual id also dedups the folder
    # watcher's announcement. One that never left needs an id of its own to pass dedup.
    msg_id = event.msg_id if moved else f"{event.msg_id}#retry-{secrets.token_hex(4)}"
    await bus.publish(rt.js, event.subject, event.to_dict(), msg_id)
    return {"key": key, "state": "pending"}


__all__ = ["NotFailed", "announce", "ingest_s3", "publish_created", "retry_failed", "subscribe_s3",
           "watch_folder"]
