"""``render``: one original in, every variant out. Pure: bytes in, bytes out, no I/O.

inspect (sniff, header, limits) → plan (geometry, base size) → decode once → per variant:
derive from the smallest in-memory image that is still big enough → shape → watermark →
flatten → encode. A variant that edits its original (trim, crop, rotate) or is animated gets
a decode of its own (``prepare.py``).
"""

from __future__ import annotations

from typing import Literal

import pyvips

from ..limits import Limits
from ..recipe import Recipe, Variant
from .decode import decode
from .encode import ALPHA_FORMATS, encode
from .inspect import inspect
from .libvips import time_limit, vips_failure, watched
from .placeholder import placeholder
from .plan import Geometry, base_size, geometry
from .prepare import prepared
from .rendered import Output, Rendered
from .source import Source
from .steps import flatten, resize, shape
from .watermark import watermarked

Strategy = Literal["once", "each"]


def render(
    data: bytes, recipe: Recipe, limits: Limits | None = None, strategy: Strategy = "once",
    placeholder: bool = True,
) -> Rendered:  # fmt: skip
    """Turn one original into every variant of ``recipe``.

    ``strategy="once"`` decodes once at the size the largest variant needs and derives the
    rest from memory; ``"each"`` decodes per variant (kept to measure against, see benchmarks).
    ``placeholder=False`` leaves the ThumbHash and dominant colour out (``""``): on-the-fly
    transforms have no use for them, and they cost about a quarter of a small render.
    Raises ``PixpipeError`` with a kind for every bad input; past ``limits.max_seconds``
    libvips stops and it raises ``TimedOut``.
    """
    limits = limits or Limits()
    source = inspect(data, limits)
    plans = [(v, geometry(source.width, source.height, v)) for v in recipe]
    with time_limit(limits.max_seconds):
        return _render(data, source, recipe, plans, strategy, placeholder)


def _render(
    data: bytes, source: Source, recipe: Recipe, plans: list[tuple[Variant, Geometry]],
    strategy: Strategy, with_placeholder: bool,
) -> Rendered:  # fmt: skip
    try:
        shared = [g for v, g in plans if not v.edits_source]
        smallest = None
        if strategy == "each" or not shared:
            outputs = {v.name: _render_each(data, source, v, g, recipe) for v, g in plans}
        else:
            base = decode(data, source, base_size(source.width, source.height, shared),
                          animated=False)  # fmt: skip
            outputs, smallest = _render_once(data, source, base, plans, recipe)
        hashed, colour = "", ""
        if with_placeholder:
            if smallest is None:
                smallest = decode(data, source, _thumb_size(source), animated=False)
            hashed, colour = placeholder(smallest)
    except pyvips.Error as exc:
        raise vips_failure(exc, source.format) from None
    ordered = tuple(outputs[v.name] for v in recipe)
    return Rendered(source, ordered, hashed, colour)


def _render_once(
    data: bytes, source: Source, base: pyvips.Image, plans: list[tuple[Variant, Geometry]],
    recipe: Recipe,
) -> tuple[dict[str, Output], pyvips.Image]:  # fmt: skip
    """Largest first, each variant resized from the smallest pooled image that covers it.
    Also returns that smallest image: the placeholder is cheapest made from it."""
    pool = [base]
    outputs = {}
    for variant, geo in sorted(plans, key=lambda p: -(p[1].resize[0] * p[1].resize[1])):
        if _animated(source, variant) or variant.edits_source:
            outputs[variant.name] = _render_each(data, source, variant, geo, recipe)
            continue
        width, height = geo.resize
        src = min(
            (p for p in pool if p.width >= width and p.height >= height),
            key=lambda p: p.width * p.height,
        )
        resized = resize(src, geo.resize)
        if resized is not src and variant.fit != "fill":
            resized = watched(resized).copy_memory()
            pool.append(resized)
        outputs[variant.name] = _finish(resized, source, variant, geo, recipe)
    return outputs, min(pool, key=lambda p: p.width * p.height)


def _render_each(
    data: bytes, source: Source, variant: Variant, geo: Geometry, recipe: Recipe
) -> Output:
    """One variant from its own decode (edited originals, animated outputs, and the "each"
    strategy)."""
    if variant.edits_source:
        image, geo, frame = prepared(data, source, variant)
        return _finish(image, source, variant, geo, recipe, frame)
    animated = _animated(source, variant)
    image = decode(data, source, geo.resize, animated=animated)
    if not animated:
        return _finish(image, source, variant, geo, recipe)
    page = image.get("page-height") if "page-height" in image.get_fields() else image.height
    frame = (source.width, source.height)
    frames = [
        _marked(shape(image.crop(0, top, image.width, page), geo, variant, frame), variant, recipe)
        for top in range(0, image.height, page)
    ]
    joined = pyvips.Image.arrayjoin(frames, across=1).copy()
    joined.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    for name in ("delay", "loop"):
        if name in image.get_fields():
            joined.set_type(image.get_typeof(name), name, image.get(name))
    fmt = variant.output_format(source.format)
    data = encode(watched(joined), fmt, variant)
    return Output(variant.name, fmt, frames[0].width, frames[0].height, data)


def _finish(
    image: pyvips.Image, source: Source, variant: Variant, geo: Geometry, recipe: Recipe,
    frame: tuple[int, int] | None = None,
) -> Output:  # fmt: skip
    fmt = variant.output_format(source.format)
    image = _marked(shape(image, geo, variant, frame or (source.width, source.height)), variant,
                    recipe)  # fmt: skip
    if fmt not in ALPHA_FORMATS:
        image = flatten(image, variant.background)
    data = encode(watched(image), fmt, variant)
    return Output(variant.name, fmt, image.width, image.height, data)


def _marked(image: pyvips.Image, variant: Variant, recipe: Recipe) -> pyvips.Image:
    if variant.watermark is None:
        return image
    return watermarked(image, variant.watermark, recipe.asset(variant.watermark.image))


def _thumb_size(source: Source) -> tuple[int, int]:
    scale = min(1.0, 32 / max(source.width, source.height))
    return max(1, round(source.width * scale)), max(1, round(source.height * scale))


def _animated(source: Source, variant: Variant) -> bool:
    return source.frames > 1 and variant.output_format(source.format) in ("gif", "webp")


__all__ = ["Output", "Rendered", "Strategy", "render"]
