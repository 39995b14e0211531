"""Decode once, at the smallest size that serves every variant.

libvips' ``thumbnail`` does the expensive part in one pass: shrink-on-load (JPEG DCT scaling,
WebP and HEIF scaled decode, SVG rendered at size), EXIF auto-orientation and ICC import to
sRGB. What it returns is held in memory and every variant derives from it.
"""

from __future__ import annotations

import pyvips

from .libvips import vips_failure, watched  # importing it hardens libvips before this first decode
from .loaders.pdf import render_pdf
from .source import Source
from .steps import resize, to_srgb


def decode(data: bytes, source: Source, size: tuple[int, int], animated: bool) -> pyvips.Image:
    """The upright, 8-bit sRGB original at exactly ``size`` per frame, computed into memory."""
    try:
        if source.format == "pdf":
            image = resize(render_pdf(data, *size), size)
        elif source.format == "heif":
            from .loaders.heic import decode_heic  # pillow-heif loads only for HEIC originals

            image = resize(decode_heic(data), size)
        else:
            # Colour management only for an embedded profile: an sRGB→sRGB transform through
            # lcms would cost more than the whole shrink-on-load decode. Without a profile the
            # pixels are taken as sRGB (CMYK with libvips' fallback profile, in to_srgb).
            profile = {"output_profile": "srgb"} if source.icc else {}
            image = pyvips.Image.thumbnail_buffer(
                data, size[0], height=size[1], size="force", **profile,
                # fail_on must reach the loader: thumbnail's own fail_on does not stop it here.
                option_string="fail_on=truncated,n=-1" if animated else "fail_on=truncated",
            )  # fmt: skip
        return watched(to_srgb(image)).copy_memory()
    except pyvips.Error as exc:
        raise vips_failure(exc, f"{source.format} cannot be decoded") from None

__all__ = [
    "decode",
]
