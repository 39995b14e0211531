"""Encoders: one libvips saver call per output format, settings from the variant."""

from __future__ import annotations

import pyvips

from ..recipe import Variant

MIME_TYPES = {
    "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif", "png": "image/png",
    "gif": "image/gif",
}  # fmt: skip
ALPHA_FORMATS = {"webp", "avif", "png", "gif"}


def encode(image: pyvips.Image, fmt: str, variant: Variant) -> bytes:
    """``image`` (8-bit sRGB) as ``fmt`` bytes, metadata stripped unless ``strip`` is off."""
    keep = "none" if variant.strip else "all"
    q, lossless = variant.quality, variant.lossless
    if fmt == "jpeg":
        # optimize_coding: smaller files at no visible cost (sharp does the same).
        return image.jpegsave_buffer(
            Q=q, interlace=variant.progressive, optimize_coding=True, keep=keep
        )
    if fmt == "webp":
        return image.webpsave_buffer(Q=q, lossless=lossless, effort=4, keep=keep)
    if fmt == "avif":
        return image.heifsave_buffer(
            Q=q, lossless=lossless, compression="av1", effort=4, keep=keep
        )
    if fmt == "png":
        return image.pngsave_buffer(compression=6, interlace=False, keep=keep)
    if fmt == "gif":
        return image.gifsave_buffer(keep=keep)
    raise ValueError(f"no encoder for {fmt!r}")

__all__ = [
    "ALPHA_FORMATS",
    "MIME_TYPES",
    "encode",
]
