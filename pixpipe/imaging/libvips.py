"""libvips, set up for untrusted input: the loader allowlist, applied on import, and its
error messages cut to one line.

Every module that hands bytes to a libvips loader (``inspect``, ``decode``) imports this
module first, so the hardening runs in every process before its first decode, whichever
entry point (``render``, ``inspect``, a render pool's worker) got there first. It lives apart
from ``inspect`` so that ``decode`` and ``render`` can share it without importing each other.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

import pyvips

from ..errors import Kind, PixpipeError, TimedOut

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


# How libvips and its codecs say an allocation failed (the render process's memory ceiling).
_OUT_OF_MEMORY = ("out of memory", "insufficient memory", "memory area too large")
_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("deadline", default=None)


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Work on images :func:`watched` inside this block stops once ``seconds`` have passed:
    libvips' own kill flag, so it works in any process (a Lambda invocation has no render
    process to kill) and the CPU is given back at once."""
    token = _DEADLINE.set((time.monotonic() + seconds, seconds) if seconds else None)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def watched(image: pyvips.Image) -> pyvips.Image:
    """``image``, to be killed by libvips while it computes past the current time limit."""
    if (limit := _DEADLINE.get()) is not None:
        deadline = limit[0]

        def check(img: pyvips.Image, _progress: object) -> None:
            if time.monotonic() > deadline:
                img.set_kill(True)

        image.set_progress(True)
        image.signal_connect("eval", check)
    return image


def vips_failure(exc: pyvips.Error, what: str) -> PixpipeError:
    """A libvips error as a failure with a kind: out of time (the time limit killed it),
    out of memory (the render process's ceiling), else the file's fault."""
    message = vips_message(exc)
    limit = _DEADLINE.get()
    if limit is not None and time.monotonic() > limit[0]:
        return TimedOut(Kind.TRANSIENT, f"the render took longer than {limit[1]:g} s (stopped)")
    if any(sign in message.lower() for sign in _OUT_OF_MEMORY):
        return PixpipeError(
            Kind.TOO_LARGE, f"the render needs more memory than it may use ({message})"
        )
    return PixpipeError(Kind.CORRUPT, f"{what}: {message}")


harden_libvips()

__all__ = ["LOADERS", "harden_libvips", "time_limit", "vips_failure", "vips_message", "watched"]
