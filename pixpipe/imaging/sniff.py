"""The format from the first bytes, and the SVG safety check: byte patterns, nothing else.

Kept free of pyvips (stdlib and ``pixpipe.errors`` only) so the HTTP layer can refuse a file
that is not an image, or pick a content type, without loading libvips into its process. The
sniffed format is also what picks the libvips loader later (``inspect.py``), so these tables
decide which decoder untrusted bytes can ever reach.
"""

from __future__ import annotations

import re

from ..errors import Kind, PixpipeError

# ISO BMFF major (or compatible) brands of HEIF images: HEVC stills and sequences, AVIF.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
                b"avif", b"avis"}  # fmt: skip
_SVG_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE[^>]*>\s*)?<svg\b", re.S)
_SVG_ENTITY = re.compile(rb"<!ENTITY|<!DOCTYPE[^>]*\[", re.I)
# Any reference that is not a fragment or inline data: network and file access are refused.
_SVG_EXTERNAL = re.compile(
    rb"""(?:href|src)\s*=\s*["']\s*(?!#|data:)[^"']|@import|url\(\s*["']?\s*(?!#|data:)""", re.I
)


# The most bytes `sniff` looks at (an SVG may open with a long XML prologue).
SNIFF_BYTES = 4096


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
    if _SVG_START.match(data[:SNIFF_BYTES].removeprefix(b"\xef\xbb\xbf")):
        return "svg"
    raise PixpipeError(Kind.UNSUPPORTED, f"not an image we take (starts with {head[:8]!r})")


def _any_brand(data: bytes) -> bool:
    """A HEIF brand among the ``ftyp`` box's compatible brands (the major one may be generic)."""
    size = int.from_bytes(data[:4], "big")
    brands = data[16 : min(size, 64)]
    return any(brands[i : i + 4] in _HEIF_BRANDS for i in range(0, len(brands), 4))


def check_svg(data: bytes) -> None:
    """Refuse SVGs that could expand entities or reach the network or the file system."""
    if _SVG_ENTITY.search(data):
        raise PixpipeError(Kind.UNSUPPORTED, "SVG with a DOCTYPE internal subset or entities")
    if _SVG_EXTERNAL.search(data):
        raise PixpipeError(Kind.UNSUPPORTED, "SVG referring to external resources")


__all__ = ["SNIFF_BYTES", "check_svg", "sniff"]
