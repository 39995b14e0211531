"""The backfill's work on one original: render only the requested variants, only where they
are missing (``missing_only``) or stale (not made from this original's etag with this very
spec), and merge them into the image's state, the other variants' entries left as they are."""

from __future__ import annotations

from ..errors import Kind, PixpipeError
from ..logs import log
from ..recipe import Recipe, Variant
from .state import ImageState, SourceInfo, VariantRecord
from .variants import Context, store_variants


def fingerprint(variant: Variant) -> str:
    """What a variant's pixels depend on (``Variant.fingerprint``)."""
    return variant.fingerprint


async def backfill(ctx: Context, key: str, recipe: Recipe, missing_only: bool) -> bool:
    """Render the variants of ``recipe`` that ``key`` lacks; ``False`` if it lacks none.
    ``ctx.recipe`` is the full recipe (what the worker renders on upload)."""
    meta = await ctx.stores.originals.head(key)
    if meta is None:
        raise PixpipeError(Kind.MISSING, f"{key} is no longer in the originals store")
    state = await ctx.states.get(key)
    todo = [v for v in recipe if not await _has(ctx, v, key, meta.etag, state, missing_only)]
    if not todo:
        return False
    subset = Recipe(tuple(todo))
    rendered = await ctx.render(await ctx.stores.originals.get(key), subset)
    infos = await store_variants(ctx.stores, subset, key, rendered, meta.etag)
    specs = {v.name: fingerprint(v) for v in subset}
    records = {
        i.name: VariantRecord(**i.model_dump(), fp=specs[i.name], etag=meta.etag) for i in infos
    }
    source = SourceInfo(format=rendered.source.format, width=rendered.source.width,
                        height=rendered.source.height)  # fmt: skip

    def merge(state: ImageState | None) -> ImageState | None:
        if state is not None and state.etag not in (None, meta.etag):
            return None  # a newer upload: the worker renders all of its variants anyway
        base = state or ImageState(key=key, state="done", etag=meta.etag)
        return base.but(variants={**base.variants, **records}, source=base.source or source)

    await ctx.states.change(key, merge)  # the worker may be writing it too: compare-and-set
    log.info("reprocessed %s: %s", key, ", ".join(subset.names))
    return True


async def _has(
    ctx: Context, variant: Variant, key: str, etag: str | None, state: ImageState | None,
    missing: bool,
) -> bool:  # fmt: skip
    """Whether ``key`` already has ``variant``: with ``missing_only``, any file at its key;
    else a file the state says was made from this very original with this very spec."""
    if missing:
        source = state.source.format if state and state.source else None
        if variant.format == "original" and not source:
            return False
        return await ctx.stores.variants.exists(variant.key_for(key, source or "jpeg"))
    info = state.variants.get(variant.name) if state else None
    if state is None or info is None or etag is None:
        return False
    if not _current(ctx, variant, info, etag, state):
        return False
    return await ctx.stores.variants.exists(info.key)


def _current(
    ctx: Context, variant: Variant, info: VariantRecord, etag: str, state: ImageState
) -> bool:
    if info.fp == fingerprint(variant) and info.etag == etag:
        return True  # made by a backfill
    # Made by the worker with the whole current recipe, from this same original.
    in_recipe = any(v == variant for v in ctx.recipe)
    return (
        in_recipe and state.recipe == ctx.recipe_id and state.etag == etag
        and state.state == "done"
    )  # fmt: skip


__all__ = ["backfill", "fingerprint"]
