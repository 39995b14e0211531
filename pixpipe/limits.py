"""Input limits: a plain frozen dataclass, light enough for every render process to import
(the settings that fill it, with pydantic-settings, live in ``config.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits, checked from the header before any pixel is decoded."""

    max_input_bytes: int = 200 * 1024 * 1024
    # sharp's default (0x3FFF²): a 268-megapixel original still loads, a bomb does not.
    max_input_pixels: int = 268_402_689
    max_frames: int = 500
    # Wall-clock budget for one original; a hostile file that slips past the header checks
    # is stopped by libvips' kill flag, and `pixpipe process` kills the worker process after it.
    max_seconds: float = 60.0
    transform_concurrency: int = 4


__all__ = ["Limits"]
