"""Other image servers' URLs, read as they read them, for teams moving to pixpipe without
changing a URL: ``imgproxy.py`` and ``thumbor.py`` parse and check a path into one
``Processing`` (pixpipe's terms), which ``http/compat.py`` renders through pixpipe's own
transform path. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass


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


def hex_colour(text: str) -> tuple[int, int, int] | None:
    """``RRGGBB`` or ``RGB`` → the colour; ``None`` when it is not hex."""
    word = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{6}|[0-9a-f]{3}", word):
        return None
    full = word if len(word) == 6 else "".join(c * 2 for c in word)
    return (int(full[0:2], 16), int(full[2:4], 16), int(full[4:6], 16))


__all__ = ["Processing", "hex_colour"]
