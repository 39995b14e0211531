"""Where a render's results go, with or without a bus (workers, Lambda, backfills):
every variant into the variants store, or the original into quarantine with why."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import Kind, PixpipeError
from .events import VariantInfo
from .recipe import Recipe

if TYPE_CHECKING:
    from .imaging import Output, Rendered
    from .stores import Stores

CACHE_CONTROL = "public, max-age=31536000, immutable"
JSON = "application/json"


def error_key(key: str) -> str:
    """Where a quarantined original's error record lives: ``{key}.error.json``."""
    return f"{key}.error.json"


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
