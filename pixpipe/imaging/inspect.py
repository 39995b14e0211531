"""Know the input before touching its pixels: sniff the format from the bytes, read the header,
check the limits. Nothing here decodes pixel data."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyvips

from ..errors import Kind, PixpipeError
from ..limits import Limits

# Formats libvips loads itself, mapped to the loader we call explicitly: the sniffed format
# picks the loader, so a file can never reach a loader we did not choose.
LOADERS = {
    "jpeg": "jpegload_buffer",
    "png": "pngload_buffer",
    "webp": "webpload_buffer",
    "gif": "gifload_buffer",
    "tiff": "tiffload_buffer",
    "heif": "heifload_buffer",
    "avif": "heifload_buffer",
    "svg": "svgload_buffer",
}
# Their libvips classes: everything else (matload, fitsload, magick, …) stays blocked.
_ALLOWED_LOADER_CLASSES = (
    "VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp", "VipsForeignLoadNsgif",
    "VipsForeignLoadTiff", "VipsForeignLoadHeif", "VipsForeignLoadSvg",
)  # fmt: skip
_ORIENTATION_SWAPS = {5, 6, 7, 8}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
                b"avif", b"avis"}  # fmt: skip
_SVG_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE[^>]*>\s*)?<svg\b", re.S)
_SVG_ENTITY = re.compile(rb"<!ENTITY|<!DOCTYPE[^>]*\[", re.I)
# Any reference that is not a fragment or inline data: network and file access are refused.
_SVG_EXTERNAL = re.compile(
    rb"""(?:href|src)\s*=\s*["']\s*(?!#|data:)[^"']|@import|url\(\s*["']?\s*(?!#|data:)""", re.I
)


def harden_libvips() -> None:
    """Block libvips' untrusted and unused loaders; keep only the ones we dispatch to."""
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for name in _ALLOWED_LOADER_CLASSES:
        pyvips.operation_block_set(name, False)


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


def sniff(data: bytes) -> str:
    """The format named by the first bytes; ``unsupported`` when they name no image we take."""
    if not data:
        raise PixpipeError(Kind.CORRUPT, "the file is empty")
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp" and (head[8:12] in _HEIF_BRANDS or _any_brand(data)):
        return "avif" if head[8:12] in (b"avif", b"avis") else "heif"
    if b"%PDF-" in data[:1024]:
        return "pdf"  # PDF, and Adobe Illustrator files (PDF-compatible since AI 9)
    if _SVG_START.match(data[:4096].removeprefix(b"\xef\xbb\xbf")):
        return "svg"
    raise PixpipeError(Kind.UNSUPPORTED, f"not an image we take (starts with {head[:8]!r})")


def _any_brand(data: bytes) -> bool:
    size = int.from_bytes(data[:4], "big")
    brands = data[16 : min(size, 64)]
    return any(brands[i : i + 4] in _HEIF_BRANDS for i in range(0, len(brands), 4))


def check_svg(data: bytes) -> None:
    """Refuse SVGs that could expand entities or reach the network or the file system."""
    if _SVG_ENTITY.search(data):
        raise PixpipeError(Kind.UNSUPPORTED, "SVG with a DOCTYPE internal subset or entities")
    if _SVG_EXTERNAL.search(data):
        raise PixpipeError(Kind.UNSUPPORTED, "SVG referring to external resources")


def load_header(data: bytes, fmt: str) -> pyvips.Image:
    """A lazy libvips image (header only; pixels decode later, when asked for)."""
    try:
        return pyvips.Operation.call(LOADERS[fmt], data, access="sequential", fail_on="truncated")
    except pyvips.Error as exc:
        message = f"{fmt} header cannot be read: {_vips_message(exc)}"
        raise PixpipeError(Kind.CORRUPT, message) from None


def inspect(data: bytes, limits: Limits) -> Source:
    """Sniff, read the header and check every limit, before any pixel is decoded."""
    if len(data) > limits.max_input_bytes:
        raise PixpipeError(
            Kind.TOO_LARGE, f"{len(data)} bytes is over the limit of {limits.max_input_bytes}"
        )
    fmt = sniff(data)
    if fmt == "pdf":
        from .pdf import pdf_header

        source = pdf_header(data)
    elif fmt == "heif":
        from .heic import heic_header

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


def _vips_message(exc: pyvips.Error) -> str:
    """libvips' detail, one line, without the noise."""
    detail = (exc.detail or exc.message or "").strip().splitlines()
    return detail[-1][:300] if detail else "unknown libvips error"
