"""The on-the-fly option grammar: ``w:800/h:600/fit:cover/g:attention/f:webp/q:75/dpr:2``
plus ``preset:NAME`` (a recipe variant) and ``exp:{unix time}`` (the URL's end), parsed once
into frozen ``TransformOptions`` and resolved into a ``Variant`` for ``imaging.render``. Pure:
no I/O.

In ``/t/{signature}/{options}/{key}`` the options are the leading ``name:value`` segments with a
known name; the key starts at the first other segment. A key whose first segment looks like an
option (or is ``_``) is written after a ``_`` segment, which ends the options (``join_path``
adds it when needed).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from ..edits import Crop, EditError, Trim, Watermark, fraction
from ..recipe import FITS, FORMATS, GRAVITIES, MAX_SIDE, Recipe, RecipeError, Variant
from .edit_options import EDITS, RULES, edit_text

NAMES = ("w", "h", "fit", "g", "f", "q", "dpr", "preset", "exp", "fp", "flip", "blur", "sharpen",
         "pad", "rot", "trim", "crop", "adapt", "brightness", "contrast", "grayscale",
         "maxbytes", "wm")  # fmt: skip
END = "_"
TRANSFORM_FORMATS = (*FORMATS, "auto")
MAX_DPR = 4.0
_OPTION = re.compile(rf"^({'|'.join(NAMES)}):(.*)$", re.DOTALL)
_SIGMA = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,2})?$")
_FRACTION = re.compile(r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$")
_INT = re.compile(r"^[0-9]{1,6}$")
_DPR = re.compile(r"^[0-9](\.[0-9]{1,2})?$")
_PRESET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ALIASES = {"center": "centre", "smart": "attention", "jpg": "jpeg"}


class BadOptions(ValueError):
    """Options that cannot be used; the message names the option, the rule and the value."""


@dataclass(frozen=True, slots=True)
class TransformOptions:
    width: int | None = None
    height: int | None = None
    fit: str | None = None
    gravity: str | None = None
    format: str | None = None
    quality: int | None = None
    dpr: float | None = None
    preset: str | None = None
    expires: int | None = None  # unix time; the signature covers it
    focus: tuple[float, float] | None = None  # fp:0.3,0.6 (a cover crop's focal point)
    flip: str | None = None  # flip:h, flip:v, flip:hv
    blur: float | None = None  # blur:2 (sigma)
    sharpen: float | None = None  # sharpen:1.5 (sigma)
    padding: tuple[int, int, int, int] | None = None  # pad:10 or pad:top,right,bottom,left
    rotate: int | None = None  # rot:90 (clockwise, before the resize; the box is the result's)
    trim: Trim | None = None  # trim:10 or trim:10,ffffff (threshold, border colour)
    crop: Crop | None = None  # crop:W,H[,gravity[,x,y]] before the resize (0.5: half the side)
    adapt: bool | None = None  # adapt:1, the box turned to the original's orientation
    brightness: float | None = None  # brightness:-100..100
    contrast: float | None = None  # contrast:-100..100
    grayscale: bool | None = None  # grayscale:1
    max_bytes: int | None = None  # maxbytes:50000 (quality lowered until it fits)
    watermark: Watermark | None = None  # wm:opacity[,gravity|tile[,x,y[,scale]]]; [api] watermark
    # w:auto / dpr:auto: from the client's hints (Sec-CH-Width, Sec-CH-DPR) when it sends them
    width_hint: bool = False
    dpr_hint: bool = False

    def path(self) -> str:
        """The canonical option segments (``w:800/h:600/…``), empty when there are none."""
        parts = []
        for name, attr in _ATTRS.items():
            value = getattr(self, attr)
            if (name, value) in (("w", None), ("dpr", None)) and getattr(self, _HINTS[name]):
                parts.append(f"{name}:auto")
            elif value is not None:
                parts.append(f"{name}:{_text(value)}")
        return "/".join(parts)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(_text(v) for v in value)
    if (edit := edit_text(value)) is not None:
        return edit
    return str(value)


AUTO = object()  # w:auto, dpr:auto
_HINTS = {"w": "width_hint", "dpr": "dpr_hint"}
# Option name → field (the fields after the options are the hint flags).
_ATTRS = dict(zip(NAMES, (f.name for f in fields(TransformOptions)[: len(NAMES)]), strict=True))


def _bad(name: str, rule: str, value: str) -> BadOptions:
    return BadOptions(f"option {name} must be {rule} (got {value!r})")


def _word(name: str, value: str, allowed: tuple[str, ...]) -> str:
    word = value.strip().lower()
    word = _ALIASES.get(word, word)
    if word not in allowed:
        raise _bad(name, f"one of {', '.join(allowed)}", value)
    return word


def _value(name: str, value: str) -> object:
    if value == "auto" and name in ("w", "dpr"):
        return AUTO
    if name in ("w", "h"):
        if not _INT.match(value) or not 1 <= int(value) <= MAX_SIDE:
            raise _bad(name, f"a whole number from 1 to {MAX_SIDE}", value)
        return int(value)
    if name == "q":
        if not _INT.match(value) or not 1 <= int(value) <= 100:
            raise _bad(name, "a whole number from 1 to 100", value)
        return int(value)
    if name == "dpr":
        if not _DPR.match(value) or not 0.5 <= float(value) <= MAX_DPR:
            raise _bad(name, f"a number from 0.5 to {MAX_DPR:g} (like 2 or 1.5)", value)
        return float(value)
    if name == "fp":
        parts = value.split(",")
        if len(parts) != 2 or not all(_FRACTION.match(p) for p in parts):
            raise _bad(name, "x,y (fractions of the width and height, like 0.3,0.6)", value)
        return (float(parts[0]), float(parts[1]))
    if name == "flip":
        if value not in ("h", "v", "hv"):
            raise _bad(name, "h, v or hv", value)
        return value
    if name in ("blur", "sharpen"):
        if not _SIGMA.match(value) or not 0 < float(value) <= 100:
            raise _bad(name, "a sigma above 0, up to 100 (like 2 or 0.5)", value)
        return float(value)
    if name == "pad":
        sides = value.split(",")
        if len(sides) not in (1, 4) or not all(_INT.match(p) and int(p) <= 4096 for p in sides):
            raise _bad(name, "pixels up to 4096: one for every side, or top,right,bottom,left",
                       value)  # fmt: skip
        numbers = tuple(int(p) for p in sides)
        return numbers * 4 if len(numbers) == 1 else numbers
    if name in EDITS:
        try:
            return EDITS[name](value)
        except (EditError, ValueError, IndexError):
            raise _bad(name, RULES[name], value) from None
    if name == "exp":
        if not re.fullmatch(r"[0-9]{1,12}", value):
            raise _bad(name, "a unix time in seconds", value)
        return int(value)
    if name == "fit":
        return _word(name, value, FITS)
    if name == "g":
        return _word(name, value, GRAVITIES)
    if name == "f":
        return _word(name, value, TRANSFORM_FORMATS)
    if not _PRESET.match(value):
        raise _bad(name, "a variant name from the recipe", value)
    return value


def parse_segments(segments: list[str]) -> tuple[TransformOptions, int]:
    """Parse leading option segments; returns the options and how many segments they took
    (including a closing ``_``)."""
    values: dict[str, object] = {}
    used = 0
    for segment in segments:
        if segment == END:
            used += 1
            break
        match = _OPTION.match(segment)
        if not match:
            break
        name, value = match.groups()
        if name in values:
            raise BadOptions(f"option {name} given twice")
        values[name] = _value(name, value)
        used += 1
    hints = {_HINTS[n]: True for n, v in values.items() if v is AUTO}
    known = {_ATTRS[n]: v for n, v in values.items() if v is not AUTO}
    return TransformOptions(**known, **hints), used  # type: ignore[arg-type]


def parse_options(text: str) -> TransformOptions:
    """Parse an options string (``w:800/h:600``; empty for none), rejecting anything else."""
    segments = [s for s in text.strip("/").split("/") if s] if text.strip("/") else []
    options, used = parse_segments(segments)
    if used != len(segments) or END in segments:
        bad = segments[used] if used < len(segments) else END
        raise BadOptions(
            f"option {bad!r} is unknown (expected name:value with a name from {', '.join(NAMES)})"
        )
    return options


def parse_path(path: str) -> tuple[TransformOptions, str]:
    """``{options}/{key}`` (the part of a transform path after the signature) → both."""
    segments = path.lstrip("/").split("/")
    options, used = parse_segments(segments)
    return options, "/".join(segments[used:])


def join_path(options: str | TransformOptions, key: str) -> str:
    """The signed path ``/{options}/{key}``, with a ``_`` when the key would read as options."""
    opts = options.path() if isinstance(options, TransformOptions) else options.strip("/")
    first = key.split("/", 1)[0]
    marker = first == END or bool(_OPTION.match(first))
    parts = [p for p in (opts, END if marker else "", key) if p]
    return "/" + "/".join(parts)


def negotiate(accept: str | None) -> str:
    """``f:auto``: AVIF, else WebP, else JPEG, from what the client's ``Accept`` admits."""
    accept = (accept or "").lower()
    for fmt in ("avif", "webp"):
        if f"image/{fmt}" in accept:
            return fmt
    return "jpeg"


HINT_HEADERS = ("Sec-CH-Width", "Sec-CH-DPR")


def hinted(
    options: TransformOptions, headers: Mapping[str, str]
) -> tuple[TransformOptions, list[str]]:
    """``w:auto`` / ``dpr:auto`` filled from the client's hints (``Sec-CH-Width`` in device
    pixels, ``Sec-CH-DPR``; their older names ``Width``, ``DPR`` too), and the headers the
    answer so depends on (for ``Vary``). Without a hint, ``w:auto`` leaves the width free and
    ``dpr:auto`` is 1."""
    changes: dict[str, object] = {}
    used = []
    if options.width_hint:
        used.append("Sec-CH-Width")
        text = headers.get("sec-ch-width") or headers.get("width") or ""
        if re.fullmatch(r"[0-9]{1,5}", text.strip()):
            changes["width"] = max(1, min(MAX_SIDE, int(text)))
    if options.dpr_hint:
        used.append("Sec-CH-DPR")
        text = headers.get("sec-ch-dpr") or headers.get("dpr") or ""
        with contextlib.suppress(ValueError):  # no hint, or not a number: 1
            changes["dpr"] = min(MAX_DPR, max(1.0, round(float(text), 2)))
    return (replace(options, **changes) if changes else options), used  # type: ignore[arg-type]


def to_variant(
    options: TransformOptions, recipe: Recipe, accept: str | None = None,
    watermark: str | None = None,
) -> Variant:  # fmt: skip
    """Resolve options (over a preset, if named) into the one variant to render; ``wm`` lays
    the ``watermark`` image (an originals key, ``[api] watermark``) over it."""
    changes: dict[str, object] = {}
    if options.preset is not None:
        preset = next((v for v in recipe if v.name == options.preset), None)
        if preset is None:
            raise BadOptions(
                f"option preset must be one of {', '.join(recipe.names)} (got {options.preset!r})"
            )
        base = replace(preset, name="t")
    else:
        base = Variant(name="t", width=MAX_SIDE, height=MAX_SIDE, format="original")
        if options.width is not None or options.height is not None:
            changes = {"width": None, "height": None}  # only the sides asked for
        elif options.fit not in (None, "inside"):
            raise BadOptions(f"option fit:{options.fit} needs w and h")
    for attr in ("width", "height", "fit", "gravity", "quality", "focus", "flip", "blur",
                 "sharpen", "padding", "rotate", "trim", "crop", "adapt", "brightness",
                 "contrast", "grayscale", "max_bytes"):  # fmt: skip
        if getattr(options, attr) is not None:
            changes[attr] = getattr(options, attr)
    if options.focus is not None:  # fp: gives fractions, 1 the far edge
        changes["focus"] = (fraction(options.focus[0]), fraction(options.focus[1]))
    if options.watermark is not None:
        if not watermark:
            raise BadOptions("option wm needs a watermark image: set [api] watermark")
        changes["watermark"] = replace(options.watermark, image=watermark)
    if options.format is not None:
        changes["format"] = negotiate(accept) if options.format == "auto" else options.format
    dpr = options.dpr or 1.0
    for side in ("width", "height"):
        size = changes.get(side, getattr(base, side))
        if isinstance(size, int) and dpr != 1.0:
            changes[side] = max(1, min(MAX_SIDE, round(size * dpr)))
    try:
        return replace(base, **changes)  # type: ignore[arg-type]
    except RecipeError as exc:
        raise BadOptions(str(exc).replace('variant "t": ', "options: ")) from None


__all__ = [
    "HINT_HEADERS",
    "NAMES",
    "BadOptions",
    "TransformOptions",
    "hinted",
    "join_path",
    "negotiate",
    "parse_options",
    "parse_path",
    "to_variant",
]
