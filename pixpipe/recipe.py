"""The recipe: named variants, parsed once at the edge into frozen dataclasses.

A variant comes from a TOML table (``[[variants]]``), a mapping, or the short spec syntax
``NAME=WxH[,fit][,gravity][,format][,qN]`` (e.g. ``thumb=160x160,cover,attention,webp,q75``).
Every error names the variant and the bad part.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .edits import ROTATIONS, Crop, EditError, Trim, Watermark, edit, parse_colour

# inside: fit in the box; cover: fill it, cropping the overflow; contain: fit, then pad to it;
# fill: stretch to it; outside: the smallest size covering it, uncropped (thumbor's
# full-fit-in); auto: cover when the box and the original have the same orientation, else
# inside (imgproxy's rt:auto).
FITS = ("inside", "cover", "contain", "fill", "outside", "auto")
GRAVITIES = (
    "centre", "north", "south", "east", "west",
    "northeast", "northwest", "southeast", "southwest",
    "attention", "entropy", "face",
)  # fmt: skip
FORMATS = ("jpeg", "webp", "avif", "png", "gif", "original")
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif", "png": "png", "gif": "gif"}
_ALIASES = {"center": "centre", "jpg": "jpeg", "centre": "centre"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SIZE = re.compile(r"^(\d*)x(\d*)$")
MAX_SIDE = 16383  # the largest side JPEG and WebP can encode
FLIPS = ("", "h", "v", "hv")
# The effects and their defaults (a variant at these values is as it was before they existed).
EFFECTS: dict[str, Any] = {
    "focus": None, "flip": "", "blur": 0.0, "sharpen": 0.0, "padding": (0, 0, 0, 0),
    "crop": None, "trim": None, "rotate": 0, "adapt": False, "brightness": 0.0,
    "contrast": 0.0, "grayscale": False, "watermark": None, "max_bytes": 0, "turn": 0,
}  # fmt: skip


class RecipeError(ValueError):
    """A variant or spec that cannot be used; the message points at the bad part."""


def _norm(word: str) -> str:
    word = word.strip().lower().replace("-", "").replace("_", "")
    return _ALIASES.get(word, word)


@dataclass(frozen=True, slots=True)
class Variant:
    """One named rendition of an original."""

    name: str
    width: int | None = None
    height: int | None = None
    fit: str = "inside"
    gravity: str = "centre"
    format: str = "jpeg"
    quality: int = 80
    progressive: bool = True
    strip: bool = True
    enlarge: bool = False
    background: tuple[int, int, int] = (255, 255, 255)
    lossless: bool = False
    # Effects, applied after the variant is shaped (see EFFECTS): left out of the fingerprint
    # at their defaults, so a variant without them keeps its version.
    focus: tuple[float, float] | None = None  # cover's focal point: fractions < 1, else pixels
    flip: str = ""  # "h", "v" or "hv"
    blur: float = 0.0  # Gaussian sigma, output pixels
    sharpen: float = 0.0  # sigma of libvips' sharpen
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, right, bottom, left, in background
    # Edits of the original before it is resized (edits.py), then more effects.
    crop: Crop | None = None
    trim: Trim | None = None
    rotate: int = 0  # clockwise: 90, 180, 270; the box is the rotated image's
    adapt: bool = False  # the box turned to the original's orientation (adaptive-fit-in)
    brightness: float = 0.0  # -100 to 100: a share of full scale added to every channel
    contrast: float = 0.0  # -100 to 100, around mid-grey
    grayscale: bool = False
    watermark: Watermark | None = None
    max_bytes: int = 0  # quality lowered until the output fits (lossy formats), 0: no limit
    turn: int = 0  # clockwise, after the variant is shaped (thumbor's rotate filter)

    def __post_init__(self) -> None:
        def bad(what: str) -> RecipeError:
            return RecipeError(f'variant "{self.name}": {what}')

        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise RecipeError(
                f"variant name must be 1-64 letters, digits, '_', '-' or '.' (got {self.name!r})"
            )
        for side in ("width", "height"):
            value = getattr(self, side)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIDE
            ):
                raise bad(f"{side} must be a whole number from 1 to {MAX_SIDE} (got {value!r})")
        if self.width is None and self.height is None:
            raise bad("give a width, a height or both")
        for attr, allowed in (("fit", FITS), ("gravity", GRAVITIES), ("format", FORMATS)):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, _norm(value))
            if getattr(self, attr) not in allowed:
                raise bad(f"{attr} must be one of {', '.join(allowed)} (got {value!r})")
        if self.fit != "inside" and (self.width is None or self.height is None):
            raise bad(f"fit {self.fit} needs both width and height")
        if not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise bad(f"quality must be from 1 to 100 (got {self.quality!r})")
        for flag in ("progressive", "strip", "enlarge", "lossless"):
            if not isinstance(getattr(self, flag), bool):
                raise bad(f"{flag} must be true or false (got {getattr(self, flag)!r})")
        try:
            object.__setattr__(self, "background", parse_colour(self.background))
        except ValueError as exc:
            raise bad(f"background {exc}") from None
        self._check_effects(bad)

    def _check_effects(self, bad: Any) -> None:
        if self.focus is not None:
            focus = tuple(self.focus)
            if len(focus) != 2 or not all(
                isinstance(c, int | float) and not isinstance(c, bool) and 0 <= c <= MAX_SIDE * 8
                for c in focus
            ):
                raise bad(f"focus must be [x, y]: fractions under 1, else pixels (got "
                          f"{self.focus!r})")  # fmt: skip
            object.__setattr__(self, "focus", (float(focus[0]), float(focus[1])))
        if self.flip not in FLIPS:
            raise bad(f"flip must be one of {', '.join(map(repr, FLIPS))} (got {self.flip!r})")
        for name in ("blur", "sharpen"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not 0 <= value <= 100:
                raise bad(f"{name} must be a sigma from 0 to 100 (got {value!r})")
        padding = tuple(self.padding)
        if len(padding) != 4 or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= MAX_SIDE for p in padding
        ):
            raise bad(f"padding must be [top, right, bottom, left], pixels (got {self.padding!r})")
        object.__setattr__(self, "padding", padding)
        try:
            for name, kind in (("crop", Crop), ("trim", Trim), ("watermark", Watermark)):
                object.__setattr__(self, name, edit(kind, getattr(self, name)))
        except EditError as exc:
            raise bad(str(exc)) from None
        for name in ("rotate", "turn"):
            if getattr(self, name) not in ROTATIONS:
                allowed = ", ".join(map(str, ROTATIONS))
                raise bad(f"{name} must be one of {allowed} (got {getattr(self, name)!r})")
        for name in ("brightness", "contrast"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not -100 <= value <= 100:
                raise bad(f"{name} must be from -100 to 100 (got {value!r})")
        for flag in ("adapt", "grayscale"):
            if not isinstance(getattr(self, flag), bool):
                raise bad(f"{flag} must be true or false (got {getattr(self, flag)!r})")
        if not isinstance(self.max_bytes, int) or isinstance(self.max_bytes, bool) or not (
            self.max_bytes == 0 or 512 <= self.max_bytes <= 100_000_000
        ):
            raise bad(f"max_bytes must be 0 (no limit) or from 512 to 100000000 (got "
                      f"{self.max_bytes!r})")  # fmt: skip

    @property
    def edits_source(self) -> bool:
        """Whether the original is edited before the resize (its own decode, see render)."""
        return bool(self.crop or self.trim or self.rotate)

    def extension(self, source_format: str = "jpeg") -> str:
        """The file extension of this variant's output for an input of ``source_format``."""
        return EXTENSIONS[self.output_format(source_format)]

    def output_format(self, source_format: str = "jpeg") -> str:
        """``original`` keeps web formats; other inputs (TIFF, HEIC, SVG, PDF) become JPEG."""
        if self.format != "original":
            return self.format
        return source_format if source_format in EXTENSIONS else "jpeg"

    def key_for(self, key: str, source_format: str = "jpeg") -> str:
        """``{variant}/{key without extension}.{ext}`` (PRODUCT.md §2)."""
        return f"{self.name}/{strip_extension(key)}.{self.extension(source_format)}"

    @property
    def fingerprint(self) -> str:
        """What this variant's pixels depend on: a changed spec makes its old files stale."""
        text = json.dumps(self.settings(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def settings(self) -> dict[str, Any]:
        """Every field that shapes the pixels, effects only where they are not at their
        defaults (so fingerprints and recipe ids stay what they were before effects existed)."""
        return {k: v for k, v in asdict(self).items() if k not in EFFECTS or v != EFFECTS[k]}

    def version(self, etag: str | None) -> str:
        """The version of this variant made from the original with ``etag``: it changes when
        the original or the spec does, so a URL carrying it may be cached for ever."""
        text = f"{etag or ''}:{self.fingerprint}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def spec(self) -> str:
        """The short spec that parses back to this variant (defaults left out)."""
        size = f"{self.width or ''}x{self.height or ''}"
        parts = [f"{self.name}={size}", self.fit, self.gravity, self.format, f"q{self.quality}"]
        return ",".join(parts)


def strip_extension(key: str) -> str:
    """``users/42/IMG 0001.heic`` → ``users/42/IMG 0001`` (only the last segment's suffix)."""
    head, _, last = key.rpartition("/")
    stem = last.rsplit(".", 1)[0] if "." in last.lstrip(".") else last
    return f"{head}/{stem}" if head else stem


def parse_spec(spec: str) -> Variant:
    """Parse ``NAME=WxH[,fit][,gravity][,format][,qN]``; the options may come in any order."""
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not rest:
        raise RecipeError(f"spec {spec!r}: expected NAME=WxH[,fit][,gravity][,format][,qN]")
    size, *options = [part.strip() for part in rest.split(",")]
    match = _SIZE.match(size.lower())
    if not match:
        raise RecipeError(
            f'variant "{name}": size must look like 800x600, 800x or x600 (got {size!r})'
        )
    width, height = (int(v) if v else None for v in match.groups())
    values: dict[str, Any] = {"name": name, "width": width, "height": height}
    for option in options:
        word = _norm(option)
        slot = (
            "fit" if word in FITS
            else "gravity" if word in GRAVITIES
            else "format" if word in FORMATS
            else "quality" if re.fullmatch(r"q\d{1,3}", word)
            else None
        )  # fmt: skip
        if word in ("lossless", "enlarge"):
            values[word] = True
            continue
        if slot is None:
            raise RecipeError(
                f'variant "{name}": unknown option {option!r} (expected a fit, a gravity, '
                "a format, qN, lossless or enlarge)"
            )
        if slot in values:
            raise RecipeError(f'variant "{name}": {slot} given twice ({option!r})')
        values[slot] = int(word[1:]) if slot == "quality" else word
    return Variant(**values)


def variant_from_mapping(data: Mapping[str, Any]) -> Variant:
    """A variant from a TOML table or JSON object, rejecting unknown keys by name."""
    known = {f.name for f in fields(Variant)}
    unknown = sorted(set(data) - known)
    label = data.get("name", "?")
    if unknown:
        raise RecipeError(f'variant "{label}": unknown key(s) {", ".join(unknown)}')
    if "name" not in data:
        raise RecipeError("variant without a name")
    return Variant(**dict(data))


@dataclass(frozen=True, slots=True)
class Recipe:
    """An ordered set of variants with unique names."""

    variants: tuple[Variant, ...] = field(default_factory=tuple)
    # The images the variants' watermarks name, by that name: loaded by whoever makes the
    # recipe (settings from files, transforms from the originals store); not part of its id
    # (each watermark's ``version`` is).
    assets: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.variants:
            raise RecipeError("a recipe needs at least one variant")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RecipeError(f"variant names must be unique (repeated: {', '.join(dupes)})")

    def asset(self, name: str) -> bytes:
        """The bytes of the image a watermark names."""
        if name not in self.assets:
            raise RecipeError(f"watermark image {name!r} was not loaded with the recipe")
        return self.assets[name]

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.variants)

    def __len__(self) -> int:
        return len(self.variants)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def only(self, names: Iterable[str]) -> Recipe:
        """The sub-recipe with just these variants (for backfills); unknown names are errors."""
        wanted = list(names)
        missing = sorted(set(wanted) - set(self.names))
        if missing:
            raise RecipeError(f"no variant named {', '.join(missing)} in the recipe")
        return Recipe(tuple(v for v in self.variants if v.name in wanted), self.assets)

    @classmethod
    def parse(cls, items: Iterable[str | Mapping[str, Any] | Variant]) -> Recipe:
        """Build a recipe from specs, mappings or variants."""
        out = []
        for item in items:
            if isinstance(item, Variant):
                out.append(item)
            elif isinstance(item, str):
                out.append(parse_spec(item))
            else:
                out.append(variant_from_mapping(item))
        return cls(tuple(out))

    @classmethod
    def default(cls) -> Recipe:
        return DEFAULT_RECIPE

    def with_defaults(self, **changes: Any) -> Recipe:
        return Recipe(tuple(replace(v, **changes) for v in self.variants), self.assets)


DEFAULT_RECIPE = Recipe.parse(
    [
        "xl=2048x2048,inside",
        "l=1280x1280,inside",
        "m=800x800,inside",
        "s=400x400,inside",
        "sq-m=600x600,cover",
        "sq-s=150x150,cover",
    ]
)


def recipe_id(recipe: Recipe) -> str:
    """A short fingerprint of the recipe, stored with each result: a changed recipe makes old
    results stale (workers, Lambda and backfills all compare it)."""
    text = json.dumps([v.settings() for v in recipe], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

__all__ = [
    "DEFAULT_RECIPE",
    "EFFECTS",
    "EXTENSIONS",
    "FITS",
    "FLIPS",
    "FORMATS",
    "GRAVITIES",
    "MAX_SIDE",
    "Recipe",
    "RecipeError",
    "Variant",
    "parse_colour",
    "parse_spec",
    "recipe_id",
    "strip_extension",
    "variant_from_mapping",
]
