"""The work of one object, as the NATS worker and backup consumer do it, without a bus:
render every variant, resize one original on demand, copy an original to backup.

Idempotence without a key-value store: after the variants are stored (and the notification
published), a state record ``.pixpipe/state/{key}.json`` goes into the variants store with the
original's etag and the recipe's fingerprint. A delivery whose etag and recipe match it is
skipped; a new upload of the key (new etag) or a changed recipe is rendered again. A failed
original is recognised by its copy in quarantine.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import Kind, PixpipeError
from ..events import ImageFailed, ImageProcessed, ObjectCreated
from ..imaging import render
from ..recipe import MAX_SIDE, Recipe, Variant
from ..results import JSON, quarantine, store_variants
from ..stores import BadKey, validate_key
from .runtime import Runtime

log = logging.getLogger("pixpipe.aws")

State = Literal["done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one object."""

    key: str
    state: State
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"key": self.key, "state": self.state}
        return {**out, "detail": self.detail} if self.detail else out


def state_key(key: str) -> str:
    """Where the Lambda keeps an original's state record, in the variants store."""
    return f".pixpipe/state/{key}.json"


def _bare(etag: str | None) -> str | None:
    return etag.strip('"') if etag else etag


async def _read_state(rt: Runtime, key: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(await rt.stores.variants.get(state_key(key))))
    except PixpipeError as exc:
        if exc.kind is Kind.MISSING:
            return None
        raise
    except ValueError:
        return None  # a damaged record: render again


async def _already_done(rt: Runtime, created: ObjectCreated) -> bool:
    state = await _read_state(rt, created.key)
    if not state or state.get("recipe") != rt.recipe_id:
        return False
    etag = created.etag
    if etag is None:  # a notification without an etag: ask the store
        meta = await rt.stores.originals.head(created.key)
        etag = meta.etag if meta else None
    return etag is not None and state.get("etag") == _bare(etag)


async def _fetch(rt: Runtime, key: str) -> tuple[bytes, str | None]:
    """The original's bytes and the etag of exactly those bytes."""
    download = await rt.stores.originals.open(key)
    data = b"".join([chunk async for chunk in download.chunks])
    return data, _bare(download.meta.etag)


async def render_variants(rt: Runtime, created: ObjectCreated) -> Outcome:
    """Fetch → render → store every variant → notify → state record. Raises ``PixpipeError``."""
    key = created.key
    if await _already_done(rt, created):
        log.info("skip %s: already done for this etag and recipe", key)
        return Outcome(key, "skipped", "already done")
    started = time.perf_counter()
    data, etag = await _fetch(rt, key)
    rendered = render(data, rt.recipe, rt.limits)
    infos = await store_variants(rt.stores, rt.recipe, key, rendered)
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    rt.publish(ImageProcessed(key=key, variants=infos, duration_ms=duration_ms, etag=etag))
    record = {
        "key": key, "state": "done", "etag": etag, "recipe": rt.recipe_id,
        "variants": {i.name: i.model_dump() for i in infos}, "duration_ms": duration_ms,
        "placeholder": rendered.placeholder, "dominant": rendered.dominant,
        "source": {"format": rendered.source.format, "width": rendered.source.width,
                   "height": rendered.source.height},
    }  # fmt: skip
    await rt.stores.variants.put(state_key(key), json.dumps(record).encode(), content_type=JSON)
    log.info("done %s in %.0f ms", key, duration_ms)
    return Outcome(key, "done", f"{len(infos)} variants in {duration_ms:.0f} ms")


async def fail(rt: Runtime, key: str, error: PixpipeError, attempts: int) -> Outcome:
    """Record a failure as the worker does: quarantine (moving the original if permanent)
    with ``{key}.error.json``, then ``image.failed``. A ``missing`` original that is already
    in quarantine is a repeated delivery of a failure recorded before: nothing to do."""
    if error.kind is Kind.MISSING and await rt.stores.quarantine.exists(key):
        log.info("skip %s: already quarantined", key)
        return Outcome(key, "skipped", "already quarantined")
    moved = await quarantine(rt.stores, key, error, attempts)
    failed = ImageFailed(key=key, kind=error.kind.value, message=error.message, attempts=attempts)
    rt.publish(failed)
    log.warning("failed %s: %s%s", key, error, " (quarantined)" if moved else "")
    return Outcome(key, "failed", str(error))


async def handle_created(rt: Runtime, created: ObjectCreated, attempt: int) -> Outcome:
    """One original, with the worker's failure rules: permanent → quarantine, done with it;
    transient → raise so the delivery is retried, recording it first on the last attempt."""
    try:
        validate_key(created.key)
    except BadKey as exc:  # can never be stored nor quarantined: report and drop
        log.error("dropped a notification: %s", exc)
        return Outcome(created.key, "failed", f"bad key: {exc}")
    try:
        return await render_variants(rt, created)
    except PixpipeError as exc:
        if exc.kind.permanent:
            return await fail(rt, created.key, exc, attempt)
        if attempt >= rt.attempts:
            await fail(rt, created.key, exc, attempt)  # then on to the dead-letter queue
        raise


def _max_dimension(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise ValueError(
            f"maxDimension must be a whole number from 1 to {MAX_SIDE} (got {value!r})"
        )
    return value


def resize_variant(rt: Runtime, max_dimension: Any) -> Variant:
    """The variant of a direct resize: fit inside N×N, named ``max-{N}``, so its result key is
    ``max-{N}/{key without extension}.{ext}``, beside the recipe's variants."""
    size = _max_dimension(max_dimension)
    first = rt.recipe.variants[0]
    fmt = rt.invoke_format or first.format
    return Variant(name=f"max-{size}", width=size, height=size, fit="inside", format=fmt,
                   quality=first.quality)  # fmt: skip


async def resize(rt: Runtime, key: str, max_dimension: Any) -> str:
    """Resize one stored original to fit inside ``max_dimension`` and return the result key;
    a result newer than the original is reused. Errors raise (the caller gets them)."""
    variant = resize_variant(rt, max_dimension)
    validate_key(key)
    original = await rt.stores.originals.head(key)
    if original is None:
        raise PixpipeError(Kind.MISSING, f"no original {key!r} in {rt.stores.originals.url}")
    if variant.format != "original":
        done = await rt.stores.variants.head(variant.key_for(key))
        if done is not None and done.last_modified >= original.last_modified:
            return done.key
    data, _ = await _fetch(rt, key)
    recipe = Recipe((variant,))
    (info,) = await store_variants(rt.stores, recipe, key, render(data, recipe, rt.limits))
    return info.key


async def back_up(rt: Runtime, key: str) -> Outcome:
    """Copy ``key`` to the backup store unless an identical copy is there (as
    ``pixpipe.backup.back_up`` does for the NATS pipeline)."""
    validate_key(key)
    source = await rt.stores.originals.head(key)
    if source is None:
        log.info("backup: %s is gone from originals (quarantined or deleted)", key)
        return Outcome(key, "skipped", "gone from originals")
    copy = await rt.stores.backup.head(key)
    if copy is not None and copy.size == source.size and copy.last_modified >= source.last_modified:
        return Outcome(key, "skipped", "already backed up")
    await rt.stores.originals.copy_to(rt.stores.backup, key)
    return Outcome(key, "done", "backed up")


__all__ = [
    "Outcome",
    "back_up",
    "fail",
    "handle_created",
    "render_variants",
    "resize",
    "resize_variant",
    "state_key",
]
