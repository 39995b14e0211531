"""The work on one original, the same on every runtime (the NATS worker, the Lambda handlers):
fetch → render every variant → store them → ``done`` → ``image.processed``; a failure →
quarantine (moving the original when it is permanent) → ``failed`` → ``image.failed``.

It takes its ports in a ``Context`` (stores, image state, a publisher, a renderer) and knows
nothing of NATS or Lambda. At-least-once delivery is made safe by idempotence: an original
whose state is final for this etag and this recipe is skipped. Which failures are retried is
``retry.py``'s business, applied by the caller (the bus's consumer loop, the Lambda adapter).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import tracing
from ..errors import Kind, PixpipeError, TimedOut
from ..events import Event, ImageFailed, ImageProcessed, ObjectCreated, VariantInfo
from ..logs import log
from ..recipe import Recipe, recipe_id
from ..storage import error_key
from .state import Change, ErrorInfo, ImageState, SourceInfo, StateStore, VariantRecord

if TYPE_CHECKING:
    from ..imaging import Output, Rendered
    from ..limits import Limits
    from ..storage import Download, Meta, Stores

Publish = Callable[[Event], Awaitable[None]]
# A renderer takes the original's bytes, or the path of a local one (it reads it itself).
Render = Callable[[bytes | Path, Recipe], Awaitable["Rendered"]]
# What a variant object says of itself: its key keeps its name when the original is replaced,
# so caches revalidate it; the versioned URL (``?v=``) is the immutable one (http/delivery.py).
CACHE_CONTROL = "public, max-age=60"
JSON = "application/json"


@dataclass(frozen=True)
class Context:
    """The ports a job runs on: where bytes and states live, how it announces, how it renders
    (and the limits it checks before it fetches)."""

    stores: Stores
    states: StateStore
    publish: Publish
    render: Render
    recipe: Recipe
    limits: Limits

    @functools.cached_property
    def recipe_id(self) -> str:
        return recipe_id(self.recipe)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one original."""

    key: str
    state: Literal["done", "skipped", "failed"]
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"key": self.key, "state": self.state}
        return {**out, "detail": self.detail} if self.detail else out


async def render_variants(
    ctx: Context, event: ObjectCreated, attempt: int = 1, *, delivery: str | None = None
) -> Outcome:
    """Render and store every variant of ``event``'s original; raises ``PixpipeError``.
    ``delivery`` names this delivery (a stream sequence, a queue message id), so that the
    same one coming back after ``done`` announces again what may not have got out.

    The newest upload wins: the original's etag in the store is the truth, checked when the
    bytes are fetched, again before the variants are written and after; a render of an older
    version writes no state, and one whose variants may have landed over a newer version's
    announces that version again, so its render comes last."""
    key = event.key
    # The state first, then the store: a state read before a store that still holds this
    # version can only be about this version or an older one. The one this process last saw
    # will do: stale, it only costs a render the skip would have saved, since every write
    # below is a compare-and-set on the state as it is.
    state = await ctx.states.recent(key)
    if event.etag and (skipped := await _already(ctx, state, event.etag, delivery)):
        return skipped  # before the fetch: a moved-away original need not be there
    ctx.limits.check_size(event.size)  # announced too big: refused without a byte read
    started = time.perf_counter()

    def processing_of(etag: str | None) -> Callable[[ImageState | None], ImageState]:
        return lambda s: (s or ImageState(key=key, state="processing")).but(
            state="processing", etag=etag, attempts=attempt
        )

    processing = None
    if event.etag and (state is None or state.etag in (None, event.etag)):
        # ``processing`` at once (seen while a slow store is retried), never over another version
        early = _for_version(event.etag, None, processing_of(event.etag))
        processing = await ctx.states.change(key, early)
    meta, original = await _locate(ctx, key)
    etag = event.etag or meta.etag
    if meta.etag != etag:
        return _superseded(key, etag)
    ctx.limits.check_size(meta.size)  # its body is not read: the stream is dropped
    if not event.etag and (skipped := await _already(ctx, state, etag, delivery)):
        return skipped
    if processing is None:
        processing = await ctx.states.change(key, _for_version(etag, state, processing_of(etag)))
    if processing is None:
        return _superseded(key, etag)
    local = isinstance(original, Path)
    with tracing.span("fetch original", bytes=meta.size,
                      read_by="render process" if local else None):  # fmt: skip
        data = original if isinstance(original, Path) else await original.whole()
    try:
        rendered = await tracing.within("render", ctx.render(data, ctx.recipe),
                                        variants=len(ctx.recipe))  # fmt: skip
    except TimedOut as exc:
        raise (exc.final() if attempt > 1 else exc) from None  # slow twice: too much work
    if await _current_etag(ctx, key) != etag:
        return _superseded(key, etag)
    stored = store_variants(ctx.stores, ctx.recipe, key, rendered, etag)
    infos = await tracing.within("put variants", stored, variants=len(rendered.variants),
                                 bytes=sum(o.bytes for o in rendered.variants))  # fmt: skip
    if (current := await _current_etag(ctx, key)) != etag:
        await _announce_again(ctx, key, current)  # its variants must be written after ours
        return _superseded(key, etag)
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    source = rendered.source
    done = ImageState(
        key=key, state="done", etag=etag, recipe=ctx.recipe_id, attempts=attempt,
        delivery=delivery, variants={i.name: VariantRecord(**i.model_dump()) for i in infos},
        duration_ms=duration_ms, placeholder=rendered.placeholder, dominant=rendered.dominant,
        source=SourceInfo(format=source.format, width=source.width, height=source.height),
    )  # fmt: skip
    written = ctx.states.change(key, _for_version(etag, None, lambda _: done))
    if await tracing.within("state write", written, state="done") is None:
        return _superseded(key, etag)  # a newer upload was announced meanwhile: it renders last
    await ctx.publish(processed_event(done))
    log.info("done %s in %.0f ms", key, duration_ms)
    return Outcome(key, "done", f"{len(infos)} variants in {duration_ms:.0f} ms")


async def _locate(ctx: Context, key: str) -> tuple[Meta, Path | Download]:
    """The original's metadata, and how it is read: a local original's path (read where it is
    rendered: its bytes never pass through here), else a download whose body is not read yet
    (it is refused by its size first)."""
    local = ctx.stores.originals.local_path(key)
    if local is None:
        download = await ctx.stores.originals.open(key)
        return download.meta, download
    if (meta := await ctx.stores.originals.head(key)) is None:
        raise PixpipeError(Kind.MISSING, f"get original {key}: not found")
    return meta, local


async def _already(
    ctx: Context, state: ImageState | None, etag: str | None, delivery: str | None
) -> Outcome | None:
    """A skip, when the state is final for this version and recipe (at-least-once delivery);
    the very delivery that made it ``done`` coming back announces it again."""
    if not (state and state.final and state.recipe == ctx.recipe_id and state.etag == etag):
        return None
    if state.state == "done" and delivery is not None and state.delivery == delivery:
        await ctx.publish(processed_event(state))  # the stream drops it if it did get out
    log.info("skip %s: already %s", state.key, state.state)
    return Outcome(state.key, "skipped", f"already {state.state}")


def _for_version(
    etag: str | None, seen: ImageState | None, build: Callable[[ImageState | None], ImageState]
) -> Change:
    """A compare-and-set change that writes ``build(state)`` only while the state is about
    this version, or is still the one ``seen`` (read before the store was found to hold this
    version, so about an older one): a newer upload's state is never overwritten."""
    allowed = {None, etag, seen.etag if seen else None}

    def change(state: ImageState | None) -> ImageState | None:
        return build(state) if state is None or state.etag in allowed else None

    return change


async def _current_etag(ctx: Context, key: str) -> str | None:
    meta = await ctx.stores.originals.head(key)
    return meta.etag if meta else None


def _superseded(key: str, etag: str | None) -> Outcome:
    log.info("skip %s@%s: a newer upload of the key is in the store", key, etag)
    return Outcome(key, "skipped", "superseded by a newer upload")


async def _announce_again(ctx: Context, key: str, etag: str | None) -> None:
    """``object.created`` for the current version under an id of its own (its first one may be
    within the bus's dedup window)."""
    meta = await ctx.stores.originals.head(key)
    if meta is None:
        return
    await ctx.publish(ObjectCreated(key=key, size=meta.size, etag=meta.etag,
                                    content_type=meta.content_type, again=True))  # fmt: skip


async def fail(
    ctx: Context, key: str, error: PixpipeError, attempts: int, *, etag: str | None = None
) -> Outcome:
    """Record a failure of the version ``etag`` (``None``: the one in the store): quarantine
    (moving the original if the failure is permanent), state ``failed``, ``image.failed``.
    Nothing is deleted before its copy is safe, and a newer upload of the key is neither
    moved, nor deleted, nor marked failed. A ``missing`` original already in quarantine is a
    repeated delivery of a failure recorded before."""
    if error.kind is Kind.MISSING and await ctx.stores.quarantine.exists(key):
        log.info("skip %s: already quarantined", key)
        return Outcome(key, "skipped", "already quarantined")
    seen = await ctx.states.get(key)  # before the store: see render_variants
    current = await _current_etag(ctx, key)
    etag = etag or current
    if current is not None and current != etag:
        return _superseded(key, etag)
    moved = await quarantine(ctx.stores, key, error, attempts, etag)
    failed_state = await ctx.states.change(
        key, _for_version(etag, seen, lambda s: (s or ImageState(key=key, state="failed")).but(
            state="failed", error=ErrorInfo(kind=error.kind.value, message=error.message),
            attempts=attempts, quarantined=moved, etag=etag, recipe=ctx.recipe_id,
        ))
    )  # fmt: skip
    if failed_state is None:
        return _superseded(key, etag)
    failed = ImageFailed(key=key, kind=error.kind.value, message=error.message, attempts=attempts)
    await ctx.publish(failed)
    log.warning("failed %s: %s%s", key, error, " (quarantined)" if moved else "")
    return Outcome(key, "failed", str(error))


def processed_event(state: ImageState) -> ImageProcessed:
    """The ``image.processed`` a ``done`` state stands for."""
    variants = tuple(
        VariantInfo(**v.model_dump(include=set(VariantInfo.model_fields)))
        for v in state.variants.values()
    )
    return ImageProcessed(
        key=state.key, variants=variants, duration_ms=state.duration_ms or 0.0, etag=state.etag
    )


async def store_variants(
    stores: Stores, recipe: Recipe, key: str, rendered: Rendered, etag: str | None
) -> tuple[VariantInfo, ...]:
    """Put every rendered variant under ``{variant}/{key without ext}.{ext}``, in parallel,
    each with its version (from the original's ``etag`` and its spec)."""
    variants = {v.name: v for v in recipe}

    async def put(output: Output) -> VariantInfo:
        variant = variants[output.name]
        vkey = variant.key_for(key, rendered.source.format)
        await stores.variants.put(
            vkey, output.data, content_type=output.content_type, cache_control=CACHE_CONTROL
        )
        return VariantInfo(
            name=output.name, key=vkey, width=output.width, height=output.height,
            bytes=output.bytes, format=output.format, version=variant.version(etag),
        )  # fmt: skip

    return tuple(await asyncio.gather(*(put(o) for o in rendered.variants)))


async def quarantine(
    stores: Stores, key: str, error: PixpipeError, attempts: int, etag: str | None = None
) -> bool:
    """Write the error record (``_pixpipe/errors/{key}.json`` in quarantine); on a permanent
    failure also move the original there: copy, then delete, each only while the original in
    the store is still the failed version ``etag`` (a re-upload landing meanwhile is kept).
    True if moved. Nothing is deleted before its copy is safe."""
    record = {**error.to_dict(), "attempts": attempts, "time": datetime.now(UTC).isoformat(),
              "etag": etag}  # fmt: skip
    moved = False
    if error.kind.permanent and error.kind is not Kind.MISSING:
        try:
            moved = await _copy_if(stores, key, etag)
        except PixpipeError as exc:
            if exc.kind is not Kind.MISSING:
                raise  # try again later: the original must be safe before anything else
    await stores.quarantine.put(error_key(key), json.dumps(record).encode(), content_type=JSON)
    if moved:
        await _delete_if(stores, key, etag)
    return moved


async def _copy_if(stores: Stores, key: str, etag: str | None) -> bool:
    meta = await stores.originals.head(key)
    if meta is None or (etag is not None and meta.etag != etag):
        return False  # gone, or a newer upload: not this failure's to move
    await stores.originals.copy_to(stores.quarantine, key)
    return True


async def _delete_if(stores: Stores, key: str, etag: str | None) -> None:
    """Delete the original only if it is still the quarantined version. (Stores offer no
    conditional delete: a re-upload landing in the instant between this check and the delete
    is the one loss left, and the backup store holds its copy.)"""
    meta = await stores.originals.head(key)
    if meta is not None and (etag is None or meta.etag == etag):
        await stores.originals.delete(key)
    else:
        log.info("kept %s in originals: a newer upload arrived while quarantining", key)


__all__ = [
    "CACHE_CONTROL",
    "Context",
    "Outcome",
    "Publish",
    "Render",
    "fail",
    "processed_event",
    "quarantine",
    "render_variants",
    "store_variants",
]
