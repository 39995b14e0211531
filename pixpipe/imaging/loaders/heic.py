"""HEIC originals (HEVC in HEIF: every iPhone photo) through pillow-heif's libheif + libde265.

pyvips-binary's libheif carries the AV1 decoder only (AVIF stays with libvips); pillow-heif's
wheels carry an HEVC decoder. HEVC has no scaled decode, so the primary image is decoded whole
(after the pixel limit was checked from the header) and shrunk by libvips like any other.
libheif applies the HEIF rotation and mirror boxes itself, which is what makes the image upright
(HEIF's own rule: the EXIF orientation tag is informational only).
"""

from __future__ import annotations

import pillow_heif
import pyvips

from ...errors import Kind, PixpipeError
from ..source import Source


def _open(data: bytes) -> pillow_heif.HeifFile:
    try:
        return pillow_heif.open_heif(data, convert_hdr_to_8bit=True)
    except (ValueError, RuntimeError, SyntaxError) as exc:
        raise PixpipeError(Kind.CORRUPT, f"heif cannot be read: {exc}") from None


def heic_header(data: bytes) -> Source:
    """The primary image's upright size, from the container (no pixels decoded)."""
    heif = _open(data)
    width, height = heif.size
    return Source("heif", width, height, 1, heif.has_alpha, icc="icc_profile" in heif.info)


def decode_heic(data: bytes) -> pyvips.Image:
    """The primary image, whole, as an 8-bit sRGB libvips image (ICC applied when present)."""
    heif = _open(data)
    try:
        raw = heif.data  # decodes
    except (ValueError, RuntimeError) as exc:
        raise PixpipeError(Kind.CORRUPT, f"heif cannot be decoded: {exc}") from None
    bands = 4 if heif.has_alpha else 3
    width, height = heif.size
    # Rows may be padded: load them as one band of `stride` bytes, cut, then fold into pixels.
    image = pyvips.Image.new_from_memory(bytes(raw), heif.stride, height, 1, "uchar")
    image = image.crop(0, 0, width * bands, height).bandfold(factor=bands).copy_memory()
    image = image.copy(interpretation="srgb")
    profile = heif.info.get("icc_profile")
    if profile:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
        image = image.icc_transform("srgb", embedded=True, input_profile="srgb")
    return image


__all__ = ["decode_heic", "heic_header"]
