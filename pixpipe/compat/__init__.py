"""Other image servers' URLs, read as they read them, for teams moving to pixpipe without
changing a URL: ``imgproxy.py`` and ``thumbor.py`` parse and check a path into one
``Processing`` (pixpipe's terms), which ``http/compat.py`` renders through pixpipe's own
transform path. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..edits import Crop, Trim, Watermark
from ..recipe import parse_colour


class BadUrl(ValueError):
    """A URL the other server would refuse too; the message names the option or the part."""


@dataclass(frozen=True, slots=True)
class Processing:
    """What a compatible URL asks of the renderer, in pixpipe's terms."""

    width: int | None
    height: int | None
    fit: str
    gravity: str
    enlarge: bool
    format: str | None  # None: the source's; "auto": from Accept
    quality: int | None
    background: tuple[int, int, int] | None
    dpr: float = 1.0
    strip: bool = True
    expires: int | None = None  # unix time
    focus: tuple[float, float] | None = None
    flip: str = ""
    blur: float = 0.0
    sharpen: float = 0.0
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    crop: Crop | None = None
    trim: Trim | None = None
    rotate: int = 0
    turn: int = 0
    adapt: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    grayscale: bool = False
    watermark: Watermark | None = None  # image: an originals key; None for imgproxy's own
    max_bytes: int = 0


# What Processing carries over into the variant as it is, by the variant's own field names.
EFFECTS = ("focus", "flip", "blur", "sharpen", "padding", "crop", "trim", "rotate", "turn",
           "adapt", "brightness", "contrast", "grayscale", "watermark", "max_bytes")  # fmt: skip


def hex_colour(text: str) -> tuple[int, int, int] | None:
    """``RRGGBB`` or ``RGB`` → the colour (the recipe's own reading); ``None`` if not hex."""
    if not re.fullmatch(r"[0-9a-fA-F]{6}|[0-9a-fA-F]{3}", text.strip()):
        return None
    return parse_colour(text)


__all__ = ["EFFECTS", "BadUrl", "Processing", "hex_colour"]
