"""Encoders: one libvips saver call per output format, settings from the variant."""

from __future__ import annotations

import pyvips

from ..recipe import Variant

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
        return image.jpegsave_buffer(**_jpeg(variant, q), keep=keep)
    if fmt == "webp":
        # effort 5: 1.7% fewer bytes than 4 (sharp's default) at the same SSIMULACRA2 for
        # about the same CPU; 6 saves 1.5% more for 2.3x the time (RESULTS.md, quality).
        return image.webpsave_buffer(Q=q, lossless=lossless, effort=5, keep=keep)
    if fmt == "avif":
        # effort 3 with full-resolution chroma: 2% fewer bytes than effort 4 with 4:2:0 at the
        # same SSIMULACRA2, for a fifth of its CPU. Effort 4 with 4:4:4 (sharp's default) is
        # 5% smaller still but 5.5x slower; effort 2, 5% larger (RESULTS.md, quality).
        return image.heifsave_buffer(
            Q=q, lossless=lossless, compression="av1", effort=3, subsample_mode="off", keep=keep
        )
    if fmt == "png":
        return image.pngsave_buffer(compression=6, interlace=False, keep=keep)
    if fmt == "gif":
        return image.gifsave_buffer(keep=keep)
    raise ValueError(f"no encoder for {fmt!r}")


def _jpeg(variant: Variant, q: int) -> dict[str, object]:
    """mozjpeg's quantisation table 5 (Klein, Silverstein and Carney): on 16 photos at
    800 px, 9.9% fewer bytes than libjpeg's table (sharp's default) at the same SSIMULACRA2,
    for no extra encode CPU (benchmarks/RESULTS.md, quality section). Trellis quantisation
    would save 0.5% more for 3x the encode CPU, which on the default six is most of a render:
    not worth it. Table 5 scores higher at the same Q, so ``q`` is saved as Q q-2: a quality
    has the look libjpeg's table gives it (sharp's q80 is pixpipe's q80). Chroma is halved
    below q90 and kept from q90 up, as libvips' ``auto`` does on the unshifted Q."""
    return {
        "Q": max(1, min(q - 2, 100)), "interlace": variant.progressive, "optimize_coding": True,
        "quant_table": 5, "subsample_mode": "off" if q >= 90 else "on",
    }  # fmt: skip


__all__ = [
    "ALPHA_FORMATS",
    "LOSSY",
    "encode",
]
