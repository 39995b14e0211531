"""The edits a variant can carry besides its size: what is cut from the original before it is
resized (``Crop``, ``Trim``), and what is laid over the result (``Watermark``).

Frozen dataclasses, checked when made, each error naming the field; a TOML table or JSON object
becomes one through ``edit()``. One rule for lengths and points everywhere (imgproxy's): **a
number under 1 is a fraction of the side, from 1 on it is pixels** (``0.5`` is half the width,
``300`` is 300 px; a crop side of 0 is the whole side). Where a URL grammar gives fractions
only (``fp:``), its 1 is read as ``EDGE``, the last pixel's fraction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

COMPASS = (
    "centre", "north", "south", "east", "west",
    "northeast", "northwest", "southeast", "southwest",
)  # fmt: skip
CORNERS = ("top-left", "bottom-right")
ROTATIONS = (0, 90, 180, 270)  # clockwise, after the EXIF orientation
CONFIGURED = "?"  # the image of a URL's watermark until it is resolved to [api] watermark
# (x, y) anchor of a window for each compass gravity: 0 start, 1 centre, 2 end.
ANCHORS = {
    "centre": (1, 1), "north": (1, 0), "south": (1, 2), "east": (2, 1), "west": (0, 1),
    "northeast": (2, 0), "northwest": (0, 0), "southeast": (2, 2), "southwest": (0, 2),
}  # fmt: skip


_COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0)}


def parse_colour(value: Any) -> tuple[int, int, int]:
    """``"#fff"``, ``"#ffffff"``, ``"white"`` or ``[r, g, b]`` → an RGB triple."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _COLOURS:
            return _COLOURS[text]
        hexa = text.removeprefix("#")
        if re.fullmatch(r"[0-9a-f]{3}|[0-9a-f]{6}", hexa):
            if len(hexa) == 3:
                hexa = "".join(c * 2 for c in hexa)
            return (int(hexa[0:2], 16), int(hexa[2:4], 16), int(hexa[4:6], 16))
    elif isinstance(value, list | tuple) and len(value) == 3 and all(
        isinstance(c, int) and 0 <= c <= 255 for c in value
    ):
        return (value[0], value[1], value[2])
    raise ValueError(f'must be "#rrggbb", "white", "black" or [r, g, b] (got {value!r})')


class EditError(ValueError):
    """An edit that cannot be used; the message names the field."""


EDGE = 0.9999


def length(value: float, side: int) -> float:
    """A length in pixels of ``side``: under 1 a fraction of it, from 1 on pixels."""
    return value * side if abs(value) < 1 else value


def fraction(value: float) -> float:
    """A fraction from a grammar of fractions (0 to 1 inclusive), in ``length``'s terms."""
    return min(value, EDGE)


def place(outer: tuple[int, int], inner: tuple[int, int], gravity: str,
          offset: tuple[float, float] = (0, 0)) -> tuple[int, int]:  # fmt: skip
    """Where a window of ``inner`` size sits in ``outer`` at a compass ``gravity``, moved by
    ``offset`` away from the edge it is anchored to (imgproxy's gravity offsets), kept inside."""
    ax, ay = ANCHORS[gravity]
    position = []
    for axis, anchor in ((0, ax), (1, ay)):
        room = outer[axis] - inner[axis]
        shift = length(offset[axis], outer[axis])
        at = room * anchor / 2 + (-shift if anchor == 2 else shift)
        position.append(int(min(max(round(at), 0), max(room, 0))))
    return position[0], position[1]


def _number(owner: str, name: str, value: Any, low: float, high: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise EditError(f"{owner} {name} must be a number from {low:g} to {high:g} (got {value!r})")
    return float(value)


def _choice(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise EditError(f"{owner} {name} must be one of {', '.join(allowed)} (got {value!r})")
    return str(value)


@dataclass(frozen=True, slots=True)
class Crop:
    """Cut ``width``×``height`` (0: the whole side) out of the upright original before it is
    resized, placed at
    ``gravity`` (a compass point, ``attention``, ``entropy`` or ``face``) and moved by
    ``x``, ``y`` from there; thumbor's ``AxB:CxD`` is ``northwest`` with the offsets."""

    width: float
    height: float
    gravity: str = "centre"
    x: float = 0
    y: float = 0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            _number("crop", name, getattr(self, name), 0, 100_000)
        for name in ("x", "y"):
            _number("crop", name, getattr(self, name), -100_000, 100_000)
        _choice("crop", "gravity", self.gravity, (*COMPASS, "attention", "entropy", "face"))

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, width, height) in a ``width``×``height`` image (smart gravities: the
        window's size only, centred; the renderer finds the place)."""
        size = (
            max(1, min(width, round(length(self.width or width, width)))),
            max(1, min(height, round(length(self.height or height, height)))),
        )
        gravity = self.gravity if self.gravity in ANCHORS else "centre"
        left, top = place((width, height), size, gravity, (self.x, self.y))
        return left, top, size[0], size[1]


@dataclass(frozen=True, slots=True)
class Trim:
    """Cut away the borders of one colour (``colour``, else the pixel in ``corner``) that
    differ from it by at most ``threshold``; ``equal_x``/``equal_y``: as much from both sides."""

    threshold: float = 10
    colour: tuple[int, int, int] | None = None
    corner: str = "top-left"
    equal_x: bool = False
    equal_y: bool = False

    def __post_init__(self) -> None:
        _number("trim", "threshold", self.threshold, 0, 442)
        _choice("trim", "corner", self.corner, CORNERS)
        if self.colour is not None:
            try:
                object.__setattr__(self, "colour", parse_colour(self.colour))
            except ValueError as exc:
                raise EditError(f"trim colour {exc}") from None
        for name in ("equal_x", "equal_y"):
            if not isinstance(getattr(self, name), bool):
                raise EditError(f"trim {name} must be true or false")


@dataclass(frozen=True, slots=True)
class Watermark:
    """``image`` laid over the variant at ``gravity`` (moved by ``x``, ``y``, or repeated over
    the whole of it with ``tile``), at ``opacity``, ``scale`` times the variant's width (0: its
    own size). ``image`` is a file the recipe names or, for on-the-fly URLs, an originals key;
    ``version`` is its content's (set by whoever loads it, so a new logo makes new results)."""

    image: str
    opacity: float = 1.0
    gravity: str = "southeast"
    x: float = 0
    y: float = 0
    scale: float = 0
    tile: bool = False
    version: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise EditError("watermark image must name a file or an originals key")
        _number("watermark", "opacity", self.opacity, 0, 1)
        _number("watermark", "scale", self.scale, 0, 1)
        for name in ("x", "y"):
            _number("watermark", name, getattr(self, name), -100_000, 100_000)
        _choice("watermark", "gravity", self.gravity, COMPASS)
        if not isinstance(self.tile, bool):
            raise EditError("watermark tile must be true or false")


E = TypeVar("E", Crop, Trim, Watermark)


def edit(kind: type[E], value: Any) -> E | None:
    """``value`` as a ``kind``: itself, ``None``, or a mapping of its fields (unknown ones are
    an error naming them)."""
    if value is None or isinstance(value, kind):
        return value
    if not isinstance(value, Mapping):
        raise EditError(f"{kind.__name__.lower()} must be a table of its fields (got {value!r})")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise EditError(f"{kind.__name__.lower()}: unknown key(s) {', '.join(unknown)}")
    try:
        return kind(**value)
    except TypeError as exc:
        raise EditError(f"{kind.__name__.lower()}: {exc}") from None


__all__ = [
    "ANCHORS",
    "COMPASS",
    "CONFIGURED",
    "CORNERS",
    "EDGE",
    "ROTATIONS",
    "Crop",
    "EditError",
    "Trim",
    "Watermark",
    "edit",
    "fraction",
    "length",
    "parse_colour",
    "place",
]
