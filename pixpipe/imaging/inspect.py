"""Know the input before touching its pixels: sniff the format from the bytes, read the header,
check the limits. Nothing here decodes pixel data.

The byte-level half (``sniff``, ``check_svg``) lives in ``sniff.py`` so it works without
libvips; this module adds the header read, which needs it. ``sniff`` and ``Source`` are
re-exported here for the callers that still import them from ``inspect``.
"""

from __future__ import annotations

import pyvips

from ..errors import Kind, PixpipeError
from ..limits import Limits
from .libvips import LOADERS, vips_message  # importing it hardens libvips
from .sniff import check_svg, sniff
from .source import Source

_ORIENTATION_SWAPS = {5, 6, 7, 8}


def load_header(data: bytes, fmt: str) -> pyvips.Image:
    """A lazy libvips image (header only; pixels decode later, when asked for)."""
    try:
        return pyvips.Operation.call(LOADERS[fmt], data, access="sequential", fail_on="truncated")
    except pyvips.Error as exc:
        message = f"{fmt} header cannot be read: {vips_message(exc)}"
        raise PixpipeError(Kind.CORRUPT, message) from None


def inspect(data: bytes, limits: Limits) -> Source:
    """Sniff, read the header and check every limit, before any pixel is decoded."""
    if len(data) > limits.max_input_bytes:
        raise PixpipeError(
            Kind.TOO_LARGE, f"{len(data)} bytes is over the limit of {limits.max_input_bytes}"
        )
    fmt = sniff(data)
    if fmt == "pdf":
        from .loaders.pdf import pdf_header  # pypdfium2 loads only for PDF originals

        source = pdf_header(data)
    elif fmt == "heif":
        from .loaders.heic import heic_header  # pillow-heif loads only for HEIC originals

        source = heic_header(data)
    else:
        if fmt == "svg":
            check_svg(data)
        source = _vips_source(fmt, load_header(data, fmt))
    _check_limits(source, limits)
    return source


def _vips_source(fmt: str, image: pyvips.Image) -> Source:
    fields = set(image.get_fields())
    orientation = image.get("orientation") if "orientation" in fields else 1
    width, height = image.width, image.height
    frames = image.get("n-pages") if "n-pages" in fields else 1
    if fmt in ("gif", "webp") and frames > 1 and "page-height" in fields:
        height = image.get("page-height")
    if orientation in _ORIENTATION_SWAPS:
        width, height = height, width
    progressive = fmt == "jpeg" and "interlaced" in fields and bool(image.get("interlaced"))
    if fmt == "png" and "interlaced" in fields:
        progressive = bool(image.get("interlaced"))
    icc = "icc-profile-data" in fields
    return Source(fmt, width, height, max(1, frames), image.hasalpha(), progressive, icc)


ANIMATED = ("gif", "webp")  # formats whose every frame is decoded


def _check_limits(source: Source, limits: Limits) -> None:
    if source.width < 1 or source.height < 1:
        raise PixpipeError(Kind.CORRUPT, f"{source.format} with no pixels")
    if source.pixels > limits.max_input_pixels:
        raise PixpipeError(
            Kind.TOO_LARGE,
            f"{source.width}x{source.height} is {source.pixels} pixels, over the limit of "
            f"{limits.max_input_pixels}",
        )
    if source.frames > limits.max_frames:
        raise PixpipeError(
            Kind.TOO_LARGE, f"{source.frames} frames is over the limit of {limits.max_frames}"
        )
    # An animation is decoded whole (every frame, for animated outputs): its pixels count
    # frame by frame, so 300 frames of 3000x3000 is a bomb even though one frame is not.
    total = source.pixels * source.frames
    if source.format in ANIMATED and total > limits.max_input_pixels:
        raise PixpipeError(
            Kind.TOO_LARGE,
            f"{source.frames} frames of {source.width}x{source.height} is {total} pixels, over "
            f"the limit of {limits.max_input_pixels}",
        )


__all__ = ["ANIMATED", "Source", "check_svg", "inspect", "load_header", "sniff"]
