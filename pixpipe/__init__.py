"""pixpipe: uploaded photos to web-ready variants, with libvips, on a NATS JetStream pipeline."""

from __future__ import annotations

from .config import Limits, Settings, load_settings
from .errors import Kind, PixpipeError
from .imaging import Output, Rendered, Source, inspect, render, sniff
from .recipe import DEFAULT_RECIPE, Recipe, RecipeError, Variant, parse_spec

__all__ = [
    "DEFAULT_RECIPE",
    "Kind",
    "Limits",
    "Output",
    "PixpipeError",
    "Recipe",
    "RecipeError",
    "Rendered",
    "Settings",
    "Source",
    "Variant",
    "inspect",
    "load_settings",
    "parse_spec",
    "render",
    "sniff",
]
