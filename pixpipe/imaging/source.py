"""``Source``: what the header says about an original, the record every stage reads.

A plain dataclass with no pyvips import, so the format loaders (``loaders/``), ``inspect``
and ``decode`` can all share it without importing one another, and callers outside imaging
(results, HTTP) can type against it without loading libvips.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Source:
    """What the header says about an original, upright (after EXIF orientation)."""

    format: str  # jpeg png webp gif tiff heif avif svg pdf
    width: int
    height: int
    frames: int = 1
    has_alpha: bool = False
    progressive: bool = False
    icc: bool = False  # an embedded ICC profile: decode must colour-manage to sRGB

    @property
    def pixels(self) -> int:
        return self.width * self.height


__all__ = ["Source"]
