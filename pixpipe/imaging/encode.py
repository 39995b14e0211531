"""Encoders: one libvips saver call per output format, settings from the variant."""

from __future__ import annotations

import pyvips

from ..recipe import Variant

MIME_TYPES = {
    "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif", "png": "image/png",
    "gif": "image/gif",
}  # fmt: skip
ALPHA_FORMATS = {"webp", "avif", "png", "gif"}
LOSSY = {"jpeg", "webp", "avif"}


def encode(image: pyvips.Image, fmt: str, variant: Variant) -> bytes:
    """``image`` (8-bit sRGB) as ``fmt`` bytes, metadata stripped unless ``strip`` is off;
    over ``max_bytes``, the highest quality that fits (a bisection, thumbor's ``max_bytes``),
    or the smallest there is when none does. PNG and GIF stay as they are."""
    if not variant.max_bytes or fmt not in LOSSY or variant.lossless:
        return _encode(image, fmt, variant, variant.quality)
    image = image.copy_memory()  # encoded several times: compute the pixels once
    data = _encode(image, fmt, variant, variant.quality)
    if len(data) <= variant.max_bytes:
        return data
    low, high, tried = 1, variant.quality - 1, {variant.quality: data}
    while low <= high:
        middle = (low + high) // 2
        tried[middle] = _encode(image, fmt, variant, middle)
        if len(tried[middle]) <= variant.max_bytes:
            low = middle + 1
        else:
            high = middle - 1
    fits = [q for q, found in tried.items() if len(found) <= variant.max_bytes]
    if fits:
        return tried[max(fits)]
    return tried.get(1) or _encode(image, fmt, variant, 1)


def _encode(image: pyvips.Image, fmt: str, variant: Variant, q: int) -> bytes:
    keep = "none" if variant.strip else "all"
    lossless = variant.lossless
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
    "LOSSY",
    "MIME_TYPES",
    "encode",
]
