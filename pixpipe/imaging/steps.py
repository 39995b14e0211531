"""The pixel steps, each a pure ``(image, params) → image`` helper (imgproxy's shape).

Order, per variant: resize → crop (cover; at a compass anchor, where libvips finds interest,
around the faces, or around a focal point) or embed (contain) → the effects (flip, brightness,
contrast, grayscale, blur, sharpen, padding; then the watermark, ``watermark.py``) → flatten
(no alpha in the output). Colour and orientation are settled once, at decode (see
``decode.py``); trim, crop by coordinates and rotation before the resize (``prepare.py``).
"""

from __future__ import annotations

import logging

import pyvips

from ..edits import ANCHORS, length
from ..errors import PixpipeError
from ..recipe import Variant
from .plan import Geometry

_SMART = {"attention", "entropy"}


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


def crop(
    image: pyvips.Image, size: tuple[int, int], gravity: str,
    focus: tuple[float, float] | None = None,
) -> pyvips.Image:  # fmt: skip
    """Cut ``size`` out of ``image``: centred on a focal point (fractions of the width and
    height) as far as the edges allow, else at a compass anchor, where libvips finds
    interest, or around the faces (``attention`` where there is none)."""
    width, height = size
    if (image.width, image.height) == size:
        return image
    if gravity == "face" and focus is None:
        found = _faces(image)
        if found is None:
            gravity = "attention"
        else:
            focus = (found[0] + found[2] / 2, found[1] + found[3] / 2)
    if focus is not None:
        left = min(max(round(focus[0] * image.width - width / 2), 0), image.width - width)
        top = min(max(round(focus[1] * image.height - height / 2), 0), image.height - height)
        return image.crop(left, top, width, height)
    if gravity in _SMART:
        return image.smartcrop(width, height, interesting=gravity)
    ax, ay = ANCHORS[gravity]
    left = (image.width - width) * ax // 2
    top = (image.height - height) * ay // 2
    return image.crop(left, top, width, height)


def _faces(image: pyvips.Image) -> tuple[float, float, float, float] | None:
    """The faces' box, or None; without OpenCV (the ``faces`` extra) a crop where the
    interest is, as thumbor's ``smart`` without its detectors, said once per process."""
    from .faces import face_box  # OpenCV loads only for a face crop

    try:
        return face_box(image)
    except PixpipeError as exc:
        if not _NO_DETECTOR:
            _NO_DETECTOR.append(exc.message)
            logging.getLogger("pixpipe").warning("%s; cropping by attention instead", exc.message)
        return None


_NO_DETECTOR: list[str] = []


def flatten(image: pyvips.Image, background: tuple[int, int, int]) -> pyvips.Image:
    """Alpha composited onto ``background``, for outputs without alpha (JPEG)."""
    if not image.hasalpha():
        return image
    return image.flatten(background=list(background)).cast("uchar")


def embed(
    image: pyvips.Image, size: tuple[int, int], background: tuple[int, int, int],
    gravity: str = "centre",
) -> pyvips.Image:  # fmt: skip
    """Pad to ``size`` with ``background`` (opaque, also under alpha), the image at a compass
    ``gravity`` (centred for the others)."""
    width, height = size
    if (image.width, image.height) == size:
        return image
    colour = [*background, 255] if image.hasalpha() else list(background)
    return image.gravity(_COMPASS.get(gravity, "centre"), width, height, extend="background",
                         background=colour)  # fmt: skip


# Our compass names → libvips' CompassDirection.
_COMPASS = {
    "centre": "centre", "north": "north", "south": "south", "east": "east", "west": "west",
    "northeast": "north-east", "northwest": "north-west", "southeast": "south-east",
    "southwest": "south-west",
}  # fmt: skip


def shape(
    image: pyvips.Image, geometry: Geometry, variant: Variant, frame: tuple[int, int]
) -> pyvips.Image:
    """Resize and crop or pad one frame into ``variant``'s final geometry, then its effects.
    ``frame``: the size of the image the variant's focal point is measured in (fractions
    under 1, else pixels)."""
    image = resize(image, geometry.resize)
    if variant.fit == "contain":
        image = embed(image, geometry.final, variant.background, variant.gravity)
    else:
        focus = variant.focus
        if focus is not None:
            focus = (length(focus[0], frame[0]) / frame[0], length(focus[1], frame[1]) / frame[1])
        image = crop(image, geometry.final, variant.gravity, focus)
    return effects(image, variant)


def tone(image: pyvips.Image, brightness: float, contrast: float) -> pyvips.Image:
    """thumbor's brightness (a share of full scale added) and contrast (its factor around
    mid-grey), on the colour bands only."""
    shift = brightness * 255 / 100
    amount = contrast * 255 / 100
    factor = 259 * (amount + 255) / (255 * (259 - amount))
    bands = image.bands - (1 if image.hasalpha() else 0)
    scale = [factor] * bands + [1] * (image.bands - bands)
    offset = [128 - 128 * factor + shift] * bands + [0] * (image.bands - bands)
    return image.linear(scale, offset).cast("uchar")


def effects(image: pyvips.Image, variant: Variant) -> pyvips.Image:
    """The variant's effects on its shaped image: flip, tone, grayscale, turn, blur, sharpen,
    then padding (in the background colour, opaque, which makes the output that much larger)."""
    if "h" in variant.flip:
        image = image.fliphor()
    if "v" in variant.flip:
        image = image.flipver()
    if variant.brightness or variant.contrast:
        image = tone(image, variant.brightness, variant.contrast)
    if variant.grayscale:
        image = image.colourspace("b-w").colourspace("srgb")
    if variant.turn:
        image = image.rotate(variant.turn)
    if variant.blur > 0:
        image = image.gaussblur(variant.blur)
    if variant.sharpen > 0:  # sharp's slopes: libvips' own default leaves soft edges alone
        image = image.sharpen(sigma=variant.sharpen, m1=1.0, m2=2.0)
    top, right, bottom, left = variant.padding
    if top or right or bottom or left:
        colour = [*variant.background, 255] if image.hasalpha() else list(variant.background)
        image = image.embed(left, top, image.width + left + right, image.height + top + bottom,
                            extend="background", background=colour)  # fmt: skip
    return image

__all__ = [
    "crop",
    "effects",
    "embed",
    "flatten",
    "resize",
    "shape",
    "to_srgb",
    "tone",
]
