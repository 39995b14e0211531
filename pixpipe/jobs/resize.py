"""The direct resize, one behaviour on every runtime (``POST /v1/invoke``, ``pixpipe invoke``,
the Lambda's ``{"key", "maxDimension"}`` payload).

``maxDimension`` N renders the variant ``max{N}``: fit inside N×N, never enlarged, in the
original's format where it is a web format (JPEG, PNG, WebP, GIF, AVIF), else JPEG. The result
is stored like any variant, at ``max{N}/{key without extension}.{ext}``, so it is served at
``/images/max{N}/…``. A result stored after the original was last written is reused, not
rendered again. (Lambda answered ``max-{N}/…`` in the recipe's first format before; such keys
are still served over HTTP, see ``http/delivery.py``.)
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Kind, PixpipeError
from ..imaging.rendered import MIME_TYPES
from ..recipe import MAX_SIDE, Recipe, Variant
from .variants import Render, store_variants

if TYPE_CHECKING:
    from ..limits import Limits
    from ..storage import Stores

LEGACY_PREFIX = "max-"  # the Lambda's old result keys: ``max-{N}/…``
# Content types an original is stored with → the format "original" keeps.
_WEB_FORMATS = {mime: fmt for fmt, mime in MIME_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Resized:
    """A direct resize's result; ``width``/``height`` are unknown when it was reused."""

    key: str
    width: int | None = None
    height: int | None = None
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resultKey": self.key}
        if self.width is not None:
            out |= {"width": self.width, "height": self.height}
        return out


def max_dimension(value: Any) -> int:
    """``maxDimension`` as given by a caller: a whole number from 1 to ``MAX_SIDE``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise ValueError(
            f"maxDimension must be a whole number from 1 to {MAX_SIDE} (got {value!r})"
        )
    return value


def resize_variant(size: Any) -> Variant:
    """The variant a direct resize to ``size`` renders."""
    n = max_dimension(size)
    return Variant(f"max{n}", n, n, "inside", format="original")


def _source_format(key: str, content_type: str | None) -> str | None:
    """The original's web format, from its stored type or else its name: only to find an
    earlier result (a wrong guess finds none, and the original is rendered again)."""
    named = (content_type or "").split(";")[0].strip()
    return _WEB_FORMATS.get(named) or _WEB_FORMATS.get(mimetypes.guess_type(key)[0] or "")


async def resize(stores: Stores, render: Render, limits: Limits, key: str, size: Any) -> Resized:
    """Resize one stored original to fit inside ``size`` × ``size``; raises ``PixpipeError``
    (``missing`` when there is no such original, ``too_large`` from its size alone)."""
    variant = resize_variant(size)
    original = await stores.originals.head(key)
    if original is None:
        raise PixpipeError(Kind.MISSING, f"no original {key!r}")
    limits.check_size(original.size)
    source_format = _source_format(key, original.content_type)
    if source_format is not None:
        earlier = await stores.variants.head(variant.key_for(key, source_format))
        if earlier is not None and earlier.last_modified >= original.last_modified:
            return Resized(earlier.key, reused=True)
    recipe = Recipe((variant,))
    rendered = await render(await stores.originals.get(key), recipe)
    (info,) = await store_variants(stores, recipe, key, rendered, original.etag)
    return Resized(info.key, info.width, info.height)


__all__ = ["LEGACY_PREFIX", "Resized", "max_dimension", "resize", "resize_variant"]
