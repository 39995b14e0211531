"""Imaging: bytes in, variants out, with libvips. The only package that imports pyvips.

inspect (sniff, header, limits) → plan (geometry) → decode (once) → steps → encode.
"""

from __future__ import annotations

from .inspect import Source, harden_libvips, inspect, sniff
from .render import Output, Rendered, Strategy, render

harden_libvips()

__all__ = ["Output", "Rendered", "Source", "Strategy", "inspect", "render", "sniff"]
