"""Input limits: a plain frozen dataclass, light enough for every render process to import
(the settings that fill it, with pydantic-settings, live in ``config.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import Kind, PixpipeError


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits, checked from the header before any pixel is decoded."""

    max_input_bytes: int = 200 * 1024 * 1024
    # sharp's default (0x3FFF²): a 268-megapixel original still loads, a bomb does not.
    max_input_pixels: int = 268_402_689
    max_frames: int = 500
    # Wall-clock budget for one original; ``render`` has libvips kill its work past it (every
    # runtime, Lambda too), and render processes are stopped after it as well.
    max_seconds: float = 60.0
    transform_concurrency: int = 4
    # Address space a render process may take for data (RLIMIT_DATA); past it an allocation
    # fails and the image is ``too_large``, the process lives on. 0: no ceiling.
    max_memory_mb: int = 3072

    def check_size(self, size: int, what: str = "the original") -> None:
        """Refuse an original from its size alone, before a byte of it is read."""
        if size > self.max_input_bytes:
            raise PixpipeError(
                Kind.TOO_LARGE,
                f"{what} is {size} bytes, over the limit of {self.max_input_bytes} bytes",
            )

    def read(self, path: Path) -> bytes:
        """A local original read where it is rendered (its bytes never pass through the
        process that handed over the path): at most ``max_input_bytes``, or ``too_large``."""
        try:
            with open(path, "rb") as file:
                data = file.read(self.max_input_bytes + 1)
        except FileNotFoundError:
            raise PixpipeError(Kind.MISSING, "the original is gone from its folder") from None
        self.check_size(len(data))
        return data


__all__ = ["Limits"]
