"""The transform options that edit (``rot trim crop adapt brightness contrast grayscale
maxbytes wm``): each a parser from the option's text to the variant's value, the rule its error
states, and the text a value is written back as (``TransformOptions.path``). Lengths follow
``edits.length``'s rule: a decimal under 1 is a fraction of the side, a whole number pixels."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..edits import COMPASS, CONFIGURED, Crop, Trim, Watermark
from ..recipe import parse_colour

_LENGTH = re.compile(r"^(0?\.[0-9]{1,4}|[0-9]{1,5})$")
_SIGNED = re.compile(r"^-?[0-9]{1,3}(\.[0-9]{1,2})?$")
_SIGMA = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,2})?$")
_FRACTION = re.compile(r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$")


def _choice(value: str, allowed: tuple[str, ...]) -> str:
    word = value.strip().lower().replace("center", "centre")
    if word not in allowed:
        raise ValueError(value)
    return word


def _lengths(texts: list[str], signed: bool = False) -> list[float]:
    out = []
    for text in texts:
        negative = signed and text.startswith("-")
        if not _LENGTH.match(text.removeprefix("-") if signed else text):
            raise ValueError(text)
        number = float(text.removeprefix("-")) if "." in text else int(text.removeprefix("-"))
        out.append(-number if negative else number)
    return out


def _crop(value: str) -> Crop:
    parts = value.split(",")
    width, height = _lengths(parts[:2])
    gravity = _choice(parts[2], (*COMPASS, "attention", "entropy", "face")) \
        if len(parts) > 2 else "centre"  # fmt: skip
    x, y = _lengths(parts[3:5], signed=True) if len(parts) == 5 else (0, 0)
    if len(parts) not in (2, 3, 5):
        raise ValueError(value)
    return Crop(width, height, gravity, x, y)


def _trim(value: str) -> Trim:
    threshold, _, colour = value.partition(",")
    if not _SIGMA.match(threshold):
        raise ValueError(value)
    return Trim(float(threshold), parse_colour("#" + colour) if colour else None)


def _watermark(value: str) -> Watermark:
    parts = value.split(",")
    if not _FRACTION.match(parts[0]) or len(parts) not in (1, 2, 4, 5):
        raise ValueError(value)
    where = _choice(parts[1], (*COMPASS, "tile")) if len(parts) > 1 else "southeast"
    x, y = _lengths(parts[2:4], signed=True) if len(parts) > 3 else (0, 0)
    scale = float(parts[4]) if len(parts) == 5 and _FRACTION.match(parts[4]) else 0.0
    if len(parts) == 5 and not _FRACTION.match(parts[4]):
        raise ValueError(value)
    return Watermark(CONFIGURED, float(parts[0]), "southeast" if where == "tile" else where, x, y,
                     scale, tile=where == "tile")  # fmt: skip


def _percent(value: str) -> float:
    if not _SIGNED.match(value) or not -100 <= float(value) <= 100:
        raise ValueError(value)
    return float(value)


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(value)
    return value == "1"


def _max_bytes(value: str) -> int:
    if not re.fullmatch(r"[0-9]{3,9}", value) or int(value) < 512:
        raise ValueError(value)
    return int(value)


def _rotation(value: str) -> int:
    if value not in ("0", "90", "180", "270"):
        raise ValueError(value)
    return int(value)


EDITS: dict[str, Callable[[str], object]] = {
    "rot": _rotation, "trim": _trim, "crop": _crop, "adapt": _flag, "brightness": _percent,
    "contrast": _percent, "grayscale": _flag, "maxbytes": _max_bytes, "wm": _watermark,
}  # fmt: skip
RULES = {
    "rot": "90, 180 or 270 (clockwise)",
    "trim": "a threshold, optionally with the border colour (trim:10 or trim:10,ffffff)",
    "crop": "W,H[,gravity[,x,y]]: pixels, or fractions of the side like 0.5",
    "adapt": "1 or 0", "grayscale": "1 or 0",
    "brightness": "from -100 to 100", "contrast": "from -100 to 100",
    "maxbytes": "a byte count from 512",
    "wm": "opacity[,gravity or tile[,x,y[,scale]]] (like wm:0.5,southeast,10,10,0.2)",
}  # fmt: skip


def edit_text(value: object) -> str | None:
    """An edit's option text (``None``: not an edit)."""
    if isinstance(value, Trim):
        colour = "" if value.colour is None else ",{:02x}{:02x}{:02x}".format(*value.colour)
        return f"{value.threshold:g}{colour}"
    if isinstance(value, Crop):
        return ",".join([_length(value.width), _length(value.height), value.gravity,
                         _length(value.x), _length(value.y)])  # fmt: skip
    if isinstance(value, Watermark):
        where = "tile" if value.tile else value.gravity
        return ",".join([f"{value.opacity:g}", where, _length(value.x), _length(value.y),
                         f"{value.scale:g}"])  # fmt: skip
    return None


def _length(value: float) -> str:
    return str(int(value)) if abs(value) >= 1 or value == 0 else f"{value:g}"


__all__ = ["EDITS", "RULES", "edit_text"]
