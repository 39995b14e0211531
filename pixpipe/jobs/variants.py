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
from typing import TYPE_CHECKING, Literal

from ..errors import Kind, PixpipeError
from ..events import Event, ImageFailed, ImageProcessed, ObjectCreated, VariantInfo
from ..logs import log
from ..recipe import Recipe, recipe_id
from ..storage import error_key
from .state import ErrorInfo, ImageState, SourceInfo, StateStore, VariantRecord

if TYPE_CHECKING:
    from ..imaging import Output, Rendered
    from ..storage import Stores

Publish = Callable[[Event], Awaitable[None]]
Render = Callable[[bytes, Recipe], Awaitable["Rendered"]]
CACHE_CONTROL = "public, max-age=31536000, immutable"
JSON = "application/json"


@dataclass(frozen=True)
class Context:
    """The ports a job runs on: where bytes and states live, how it announces, how it renders."""

    stores: Stores
    states: StateStore
    publish: Publish
    render: Render
    recipe: Recipe

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
    same one coming back after ``done`` announces again what may not have got out."""
    key = event.key
    if event.etag is None:  # a notification without one: the store knows
        meta = await ctx.stores.originals.head(key)
        event = event.model_copy(update={"etag": meta.etag if meta else None})
    state = await ctx.states.get(key)
    if state and state.final and state.recipe == ctx.recipe_id and state.etag == event.etag:
        if state.state == "done" and delivery is not None and state.delivery == delivery:
            await ctx.publish(processed_event(state))  # the stream drops it if it did get out
        log.info("skip %s: already %s", key, state.state)
        return Outcome(key, "skipped", f"already {state.state}")
    started = time.perf_counter()
    base = state or ImageState(key=key, state="processing")
    await ctx.states.put(base.but(state="processing", etag=event.etag, attempts=attempt))
    download = await ctx.stores.originals.open(key)
    data = b"".join([chunk async for chunk in download.chunks])
    rendered = await ctx.render(data, ctx.recipe)
    infos = await store_variants(ctx.stores, ctx.recipe, key, rendered)
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    etag = event.etag or download.meta.etag
    source = rendered.source
    done = ImageState(
        key=key, state="done", etag=etag, recipe=ctx.recipe_id, attempts=attempt,
        delivery=delivery, variants={i.name: VariantRecord(**i.model_dump()) for i in infos},
        duration_ms=duration_ms, placeholder=rendered.placeholder, dominant=rendered.dominant,
        source=SourceInfo(format=source.format, width=source.width, height=source.height),
    )  # fmt: skip
    await ctx.states.put(done)
    await ctx.publish(processed_event(done))
    log.info("done %s in %.0f ms", key, duration_ms)
    return Outcome(key, "done", f"{len(infos)} variants in {duration_ms:.0f} ms")


async def fail(
    ctx: Context, key: str, error: PixpipeError, attempts: int, *, etag: str | None = None
) -> Outcome:
    """Record a failure: quarantine (moving the original if the failure is permanent), state
    ``failed``, ``image.failed``. Nothing is deleted before its copy is safe. A ``missing``
    original already in quarantine is a repeated delivery of a failure recorded before."""
    if error.kind is Kind.MISSING and await ctx.stores.quarantine.exists(key):
        log.info("skip %s: already quarantined", key)
        return Outcome(key, "skipped", "already quarantined")
    moved = await quarantine(ctx.stores, key, error, attempts)
    base = await ctx.states.get(key) or ImageState(key=key, state="failed")
    await ctx.states.put(
        base.but(
            state="failed", error=ErrorInfo(kind=error.kind.value, message=error.message),
            attempts=attempts, quarantined=moved, etag=etag or base.etag, recipe=ctx.recipe_id,
        )
    )  # fmt: skip
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
    stores: Stores, recipe: Recipe, key: str, rendered: Rendered
) -> tuple[VariantInfo, ...]:
    """Put every rendered variant under ``{variant}/{key without ext}.{ext}``, in parallel."""
    variants = {v.name: v for v in recipe}

    async def put(output: Output) -> VariantInfo:
        vkey = variants[output.name].key_for(key, rendered.source.format)
        await stores.variants.put(
            vkey, output.data, content_type=output.content_type, cache_control=CACHE_CONTROL
        )
        return VariantInfo(
            name=output.name, key=vkey, width=output.width, height=output.height,
            bytes=output.bytes, format=output.format,
        )  # fmt: skip

    return tuple(await asyncio.gather(*(put(o) for o in rendered.variants)))


async def quarantine(stores: Stores, key: str, error: PixpipeError, attempts: int) -> bool:
    """Write ``{key}.error.json`` to quarantine; on a permanent failure also move the original
    there (copy, then delete: nothing is deleted before its copy is safe). True if moved."""
    record = {**error.to_dict(), "attempts": attempts, "time": datetime.now(UTC).isoformat()}
    moved = False
    if error.kind.permanent and error.kind is not Kind.MISSING:
        try:
            await stores.originals.copy_to(stores.quarantine, key)
            moved = True
        except PixpipeError as exc:
            if exc.kind is not Kind.MISSING:
                raise  # try again later: the original must be safe before anything else
    await stores.quarantine.put(error_key(key), json.dumps(record).encode(), content_type=JSON)
    if moved:
        await stores.originals.delete(key)
    return moved


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
