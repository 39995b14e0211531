"""pixpipe: uploaded photos to web-ready variants, with libvips, on a NATS JetStream pipeline.

The names below are imported on first use, so a render process that needs only the imaging
core does not pay for the settings machinery (or the other way round).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_RECIPE": "recipe", "Recipe": "recipe", "RecipeError": "recipe", "Variant": "recipe",
    "parse_spec": "recipe", "Kind": "errors", "PixpipeError": "errors", "Limits": "limits",
    "Settings": "config", "load_settings": "config", "Output": "imaging.render",
    "Rendered": "imaging.render", "render": "imaging.render", "inspect": "imaging.inspect",
    "Source": "imaging.source", "sniff": "imaging.sniff",
}  # fmt: skip
# Each name is read from the module that defines it, never from a package attribute that a
# submodule import could have rebound (``render``, ``inspect`` and ``sniff`` are also modules).


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pixpipe' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = sorted(_EXPORTS)
