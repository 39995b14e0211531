"""A tiny placeholder per original: a ThumbHash (≈25 bytes, alpha-aware, keeps the aspect
ratio) and the dominant colour, for apps to paint while the real variant loads."""

from __future__ import annotations

import base64
from collections import Counter

import fast_thumbhash
import pyvips

_SIDE = 32  # ThumbHash keeps ≤7 DCT terms a side: 32 px is plenty


def placeholder(image: pyvips.Image) -> tuple[str, str]:
    """``(thumbhash as base64, dominant colour as #rrggbb)`` of an 8-bit sRGB image."""
    small = image.thumbnail_image(_SIDE, height=_SIDE)
    if small.bands == 3:
        small = small.bandjoin(255)
    rgba = bytes(small.write_to_memory())
    hashed = fast_thumbhash.rgba_to_thumb_hash(small.width, small.height, rgba)
    return base64.b64encode(bytes(hashed)).decode("ascii"), dominant(rgba)


def dominant(rgba: bytes) -> str:
    """The mean of the most populated 4-bit-per-channel colour bin among opaque pixels."""
    pixels = [rgba[i : i + 3] for i in range(0, len(rgba), 4) if rgba[i + 3] >= 128]
    if not pixels:
        return "#000000"
    bins = Counter((r >> 4, g >> 4, b >> 4) for r, g, b in pixels)
    top = bins.most_common(1)[0][0]
    members = [p for p in pixels if (p[0] >> 4, p[1] >> 4, p[2] >> 4) == top]
    mean = [sum(p[c] for p in members) // len(members) for c in range(3)]
    return "#{:02x}{:02x}{:02x}".format(*mean)

__all__ = [
    "dominant",
    "placeholder",
]
