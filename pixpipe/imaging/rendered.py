"""What a render gives back: ``Rendered`` (every variant of one original) and its ``Output``s.

Plain dataclasses with no pyvips import: a render process pickles them to the pipeline's
asyncio process, and unpickling them there must not load libvips (nor Pillow, nor PDFium):
that cost 0.25 s of CPU and tens of MB on the first image, in a process that never touches
a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..recipe import EXTENSIONS
from .source import Source

MIME_TYPES = {
    "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif", "png": "image/png",
    "gif": "image/gif",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Output:
    """One encoded variant."""

    name: str
    format: str
    width: int
    height: int
    data: bytes

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def bytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Rendered:
    """Every variant of one original, with what the header said and a placeholder."""

    source: Source
    variants: tuple[Output, ...]
    placeholder: str  # ThumbHash, base64
    dominant: str  # "#rrggbb"

    def __getitem__(self, name: str) -> Output:
        return next(v for v in self.variants if v.name == name)


__all__ = ["MIME_TYPES", "Output", "Rendered"]
