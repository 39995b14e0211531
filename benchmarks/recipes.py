"""The two recipes every tool runs: same sizes, same fit, JPEG quality 80, progressive."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

QUALITY = 80


@dataclass(frozen=True, slots=True)
class Size:
    """One variant: a box and how the image fits it (``inside`` or ``cover``)."""

    name: str
    width: int
    height: int
    fit: str

    @property
    def spec(self) -> str:
        """pixpipe's short spec, e.g. ``sq-s=150x150,cover,jpeg,q80``."""
        return f"{self.name}={self.width}x{self.height},{self.fit},jpeg,q{QUALITY}"


RECIPES: dict[str, tuple[Size, ...]] = {
    "two-thumbnails": (
        Size("t640", 640, 640, "inside"),
        Size("t160", 160, 160, "cover"),
    ),
    "default-six": (
        Size("xl", 2048, 2048, "inside"),
        Size("l", 1280, 1280, "inside"),
        Size("m", 800, 800, "inside"),
        Size("s", 400, 400, "inside"),
        Size("sq-m", 600, 600, "cover"),
        Size("sq-s", 150, 150, "cover"),
    ),
}


def specs(recipe: str) -> list[str]:
    return [size.spec for size in RECIPES[recipe]]


def as_json(recipe: str) -> str:
    """The recipe as the sharp peer reads it."""
    variants = [{**asdict(size), "quality": QUALITY} for size in RECIPES[recipe]]
    return json.dumps({"variants": variants})


def scale_needed(width: int, height: int, recipe: str) -> float:
    """The largest scale any variant needs from a ``width``×``height`` image (≤ 1).

    Pillow's ``draft`` and ImageMagick's ``jpeg:size`` use it to decode no larger than needed.
    """
    scales = []
    for size in RECIPES[recipe]:
        fit = max if size.fit == "cover" else min
        scales.append(fit(size.width / width, size.height / height))
    return min(1.0, max(scales))


def draft_size(width: int, height: int, recipe: str) -> tuple[int, int]:
    scale = scale_needed(width, height, recipe)
    return max(1, round(width * scale + 0.5)), max(1, round(height * scale + 0.5))
