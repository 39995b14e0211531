"""The edited original: trim, then crop, then rotate, before a variant is resized.

A variant that edits its original (``Variant.edits_source``) gets a decode of its own: its
geometry is the edited region's, not the original's, so it cannot share the recipe's one
decode. The region is found in the upright original's pixels (a trim on a small analysis
decode), then the whole is decoded at the scale that region needs (shrink-on-load still
applies: a crop of half a 40 MP photo to 800 px decodes at about 1/4) and cut out.
"""

from __future__ import annotations

import pyvips

from ..edits import Crop, Trim
from ..recipe import Variant
from .decode import decode
from .plan import Geometry, geometry
from .source import Source
from .steps import crop as cut

Box = tuple[int, int, int, int]  # left, top, width, height
_ANALYSIS = 1024  # long side of the decode a trim is found on: sub-pixel at web sizes


def prepared(
    data: bytes, source: Source, variant: Variant
) -> tuple[pyvips.Image, Geometry, tuple[int, int]]:
    """The variant's edited original, decoded just big enough, the geometry it takes, and its
    size in the original's pixels (what a focal point in pixels is measured in)."""
    box: Box = (0, 0, source.width, source.height)
    analysis = None
    if variant.trim is not None:
        analysis = decode(data, source, _scaled(source, _ANALYSIS / max(source.width,
                          source.height)), animated=False)  # fmt: skip
        box = trimmed(analysis, variant.trim, source)
    crop = variant.crop
    if crop is not None and crop.gravity not in ("attention", "entropy", "face"):
        left, top, width, height = crop.box(box[2], box[3])
        box = (box[0] + left, box[1] + top, width, height)
    wide, high = box[2], box[3]
    if crop is not None and crop.gravity in ("attention", "entropy", "face"):
        _, _, wide, high = crop.box(box[2], box[3])  # the window; placed once decoded
    if variant.rotate in (90, 270):
        wide, high = high, wide
    geo = geometry(wide, high, variant)
    scale = min(1.0, max(geo.resize[0] / wide, geo.resize[1] / high))
    if analysis is not None and analysis.width >= source.width * scale:
        image = analysis  # the trim's decode is already big enough
    else:
        image = decode(data, source, _scaled(source, scale), animated=False)
    image = _cut(image, source, box)
    if crop is not None and crop.gravity in ("attention", "entropy", "face"):
        image = _smart_window(image, crop, (box[2], box[3]))
    if variant.rotate:
        image = image.rotate(variant.rotate)
    return image, geo, (wide, high)


def trimmed(image: pyvips.Image, trim: Trim, source: Source) -> Box:
    """The box, in the original's pixels, left when the borders of one colour are cut from
    ``image`` (a smaller decode of it); the whole image if nothing else is in it."""
    flat = image.flatten(background=list(trim.colour or (255, 255, 255))) if image.hasalpha() \
        else image  # fmt: skip
    if trim.colour is not None:
        colour = list(trim.colour)
    else:
        x, y = (0, 0) if trim.corner == "top-left" else (flat.width - 1, flat.height - 1)
        colour = flat.getpoint(x, y)[:3]
    left, top, width, height = flat.find_trim(threshold=trim.threshold, background=colour)
    if width == 0 or height == 0:
        return (0, 0, source.width, source.height)
    right, bottom = flat.width - left - width, flat.height - top - height
    if trim.equal_x:
        left = right = min(left, right)
    if trim.equal_y:
        top = bottom = min(top, bottom)
    sx, sy = source.width / flat.width, source.height / flat.height
    x0, y0 = round(left * sx), round(top * sy)
    x1, y1 = source.width - round(right * sx), source.height - round(bottom * sy)
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def _cut(image: pyvips.Image, source: Source, box: Box) -> pyvips.Image:
    """``box`` (original pixels) out of ``image`` (the original at some scale)."""
    if box == (0, 0, source.width, source.height):
        return image
    sx, sy = image.width / source.width, image.height / source.height
    left, top = min(round(box[0] * sx), image.width - 1), min(round(box[1] * sy), image.height - 1)
    width = max(1, min(round(box[2] * sx), image.width - left))
    height = max(1, min(round(box[3] * sy), image.height - top))
    return image.crop(left, top, width, height)


def _smart_window(image: pyvips.Image, crop: Crop, size: tuple[int, int]) -> pyvips.Image:
    """A crop placed where libvips finds interest, or around the faces."""
    window = crop.box(size[0], size[1])
    sx, sy = image.width / size[0], image.height / size[1]
    wanted = (max(1, min(image.width, round(window[2] * sx))),
              max(1, min(image.height, round(window[3] * sy))))  # fmt: skip
    return cut(image, wanted, crop.gravity)


def _scaled(source: Source, scale: float) -> tuple[int, int]:
    scale = min(1.0, scale)
    return max(1, round(source.width * scale)), max(1, round(source.height * scale))


__all__ = ["prepared", "trimmed"]
