"""Imaging: bytes in, variants out, with libvips. The only package that imports pyvips.

sniff (magic bytes) → inspect (header, limits) → plan (geometry) → decode (once) → steps →
encode, with ``loaders/`` for the formats libvips cannot decode itself (PDF, HEIC).

The names below are imported on first use, so ``import pixpipe.imaging.sniff`` (what the HTTP
layer needs to check an upload) does not load libvips. libvips is hardened on import of
``libvips.py``, which ``inspect`` and ``decode`` import before they hand it any bytes.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    "Source": "source", "harden_libvips": "libvips", "inspect": "inspect", "sniff": "sniff",
    "Output": "rendered", "Rendered": "rendered", "Strategy": "render", "render": "render",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


class _Package(types.ModuleType):
    """``inspect``, ``render`` and ``sniff`` each name a submodule and the function it exports.

    Importing a submodule binds it on its package, over the function's name; this package
    declines that binding, so ``pixpipe.imaging.render`` is the function (through
    ``__getattr__``) whichever module was imported first. ``from pixpipe.imaging.render
    import …`` still finds the submodule: it reads ``sys.modules``, not the attribute.

    A plain lazy package cannot keep that promise: the import system binds the submodule on
    the package as soon as it is loaded, even inside ``from pixpipe.imaging import render``
    (``__getattr__`` loads it, then the statement reads the attribute again), so callers such
    as ``jobs.pool`` and ``offline`` would get the module. ``pixpipe``'s own lazy names do not
    rely on this: they read each function from its submodule.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["Output", "Rendered", "Source", "Strategy", "harden_libvips", "inspect", "render",
           "sniff"]  # fmt: skip
