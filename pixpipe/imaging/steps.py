"""The pixel steps, each a pure ``(image, params) → image`` helper (imgproxy's shape).

Order, per variant: resize → crop (cover) → flatten (no alpha in the output) → embed (contain).
Colour and orientation are settled once, at decode (see ``decode.py``).
"""

from __future__ import annotations

import pyvips

from ..recipe import Variant
from .plan import Geometry

_SMART = {"attention", "entropy"}
# (x, y) anchor of the crop window for each compass gravity: 0 start, 1 centre, 2 end.
_ANCHORS = {
    "centre": (1, 1), "north": (1, 0), "south": (1, 2), "east": (2, 1), "west": (0, 1),
    "northeast": (2, 0), "northwest": (0, 0), "southeast": (2, 2), "southwest": (0, 2),
}  # fmt: skip


def to_srgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB (with alpha if present): CMYK, 16-bit, grey and Lab all end here."""
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    return image if image.format == "uchar" else image.cast("uchar")


def resize(image: pyvips.Image, size: tuple[int, int]) -> pyvips.Image:
    """Exactly ``size`` (Lanczos3, alpha premultiplied by libvips)."""
    if (image.width, image.height) == size:
        return image
    return image.thumbnail_image(size[0], height=size[1], size="force")


def crop(image: pyvips.Image, size: tuple[int, int], gravity: str) -> pyvips.Image:
    """Cut ``size`` out of ``image``: at a compass anchor, or where libvips finds interest."""
    width, height = size
    if (image.width, image.height) == size:
        return image
    if gravity in _SMART:
        return image.smartcrop(width, height, interesting=gravity)
    ax, ay = _ANCHORS[gravity]
    left = (image.width - width) * ax // 2
    top = (image.height - height) * ay // 2
    return image.crop(left, top, width, height)


def flatten(image: pyvips.Image, background: tuple[int, int, int]) -> pyvips.Image:
    """Alpha composited onto ``background``, for outputs without alpha (JPEG)."""
    if not image.hasalpha():
        return image
    return image.flatten(background=list(background)).cast("uchar")


def embed(
    image: pyvips.Image, size: tuple[int, int], background: tuple[int, int, int]
) -> pyvips.Image:
    """Pad to ``size``, centred, with ``background`` (opaque, also under alpha)."""
    width, height = size
    if (image.width, image.height) == size:
        return image
    colour = [*background, 255] if image.hasalpha() else list(background)
    return image.gravity("centre", width, height, extend="background", background=colour)


def shape(image: pyvips.Image, geometry: Geometry, variant: Variant) -> pyvips.Image:
    """Resize and crop or pad one frame into ``variant``'s final geometry."""
    image = resize(image, geometry.resize)
    if variant.fit == "contain":
        return embed(image, geometry.final, variant.background)
    return crop(image, geometry.final, variant.gravity)

__all__ = [
    "crop",
    "embed",
    "flatten",
    "resize",
    "shape",
    "to_srgb",
]
