"""libvips, set up for untrusted input: the loader allowlist, applied on import, and its
error messages cut to one line.

Every module that hands bytes to a libvips loader (``inspect``, ``decode``) imports this
module first, so the hardening runs in every process before its first decode, whichever
entry point (``render``, ``inspect``, a render pool's worker) got there first. It lives apart
from ``inspect`` so that ``decode`` and ``render`` can share it without importing each other.
"""

from __future__ import annotations

import pyvips

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


def harden_libvips() -> None:
    """Block libvips' untrusted and unused loaders; keep only the ones we dispatch to.

    Idempotent: it runs once on import of this module; calling it again is harmless.
    """
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for name in _ALLOWED_LOADER_CLASSES:
        pyvips.operation_block_set(name, False)


def vips_message(exc: pyvips.Error) -> str:
    """libvips' detail, one line, without the noise."""
    detail = (exc.detail or exc.message or "").strip().splitlines()
    return detail[-1][:300] if detail else "unknown libvips error"


harden_libvips()

__all__ = ["LOADERS", "harden_libvips", "vips_message"]
