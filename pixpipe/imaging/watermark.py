"""The watermark step: an image laid over the finished variant (imgproxy's ``wm``, thumbor's
``watermark`` filter), at a compass point or repeated over the whole of it, at an opacity,
scaled to a share of the variant's width. The mark's bytes come with the recipe
(``Recipe.assets``); they are inspected and decoded like any original, under the same limits.
"""

from __future__ import annotations

import math

import pyvips

from ..edits import Watermark, place
from ..limits import Limits
from .decode import decode
from .inspect import inspect


def mark(data: bytes, watermark: Watermark, width: int) -> pyvips.Image:
    """The watermark image, 8-bit sRGB with alpha at ``opacity``, scaled to ``scale`` of
    ``width`` (its own size when 0), never wider than ``width``."""
    source = inspect(data, Limits())
    wide = round(width * watermark.scale) if watermark.scale else min(source.width, width)
    wide = max(1, min(wide, width))
    size = (wide, max(1, round(source.height * wide / source.width)))
    image = decode(data, source, size, animated=False)
    if not image.hasalpha():
        image = image.bandjoin(255)
    if watermark.opacity < 1:
        image = image.linear([1, 1, 1, watermark.opacity], 0).cast("uchar")
    return image


def watermarked(image: pyvips.Image, watermark: Watermark, data: bytes) -> pyvips.Image:
    """``image`` with the mark from ``data`` laid over it (bands as they were)."""
    logo = mark(data, watermark, image.width)
    if logo.height > image.height:
        logo = logo.thumbnail_image(image.width, height=image.height)
    if watermark.tile:
        across, down = math.ceil(image.width / logo.width), math.ceil(image.height / logo.height)
        logo, x, y = logo.replicate(across, down).crop(0, 0, image.width, image.height), 0, 0
    else:
        x, y = place((image.width, image.height), (logo.width, logo.height), watermark.gravity,
                     (watermark.x, watermark.y))  # fmt: skip
    had_alpha = image.hasalpha()
    base = image if had_alpha else image.bandjoin(255)
    out = base.composite2(logo, "over", x=x, y=y).cast("uchar")
    return out if had_alpha else out.extract_band(0, n=3)


__all__ = ["mark", "watermarked"]
