"""thumbor's URLs, read as thumbor reads them (https://thumbor.readthedocs.io/en/latest/usage.html):

    /{hmac|unsafe}/[meta/][trim[:top-left|bottom-right][:tolerance]/][AxB:CxD/]
        [fit-in/|adaptive-fit-in/|full-fit-in/|adaptive-full-fit-in/][-][W|orig]x[-][H|orig]/
        [left|right|center/][top|bottom|middle/][smart/][filters:name(args):name(args)/]{image}

- **Signature**: URL-safe base64 *with* padding of HMAC-SHA1(security key, the path after the
  signature, without its leading ``/``), as libthumbor makes it; ``unsafe`` instead of it only
  where ``[thumbor] allow_unsafe`` says so.
- **The image** is an originals key here (thumbor's is a URL or a loader's path).

Pure (no I/O): ``http/thumbor.py`` serves it through pixpipe's own transform path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..edits import Crop, EditError, Trim, Watermark
from . import BadUrl, Processing, hex_colour

_PATH = re.compile(
    r"""^
    (?:(?P<meta>meta)/)?
    (?:trim(?P<trim>(?::(?:top-left|bottom-right))?(?::\d+)?)/)?
    (?:(?P<crop>\d+x\d+:\d+x\d+)/)?
    (?:(?P<fit>fit-in|adaptive-fit-in|full-fit-in|adaptive-full-fit-in)/)?
    (?:(?P<hflip>-)?(?P<width>\d+|orig)?x(?P<vflip>-)?(?P<height>\d+|orig)?/)?
    (?:(?P<halign>left|right|center)/)?
    (?:(?P<valign>top|bottom|middle)/)?
    (?:(?P<smart>smart)/)?
    (?:filters:(?P<filters>.+?\))/)?
    (?P<image>.+)
    $""",
    re.VERBOSE,
)
_FILTER = re.compile(r"([a-z_]+)\(([^()]*)\)")
FILTERS = (
    "quality", "format", "blur", "sharpen", "brightness", "contrast", "grayscale", "rotate",
    "fill", "background_color", "strip_icc", "no_upscale", "focal", "watermark", "max_bytes",
)  # fmt: skip
FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "webp": "webp", "gif": "gif",
           "avif": "avif"}  # fmt: skip
_GRAVITY = {
    ("left", "top"): "northwest", ("center", "top"): "north", ("right", "top"): "northeast",
    ("left", "middle"): "west", ("center", "middle"): "centre", ("right", "middle"): "east",
    ("left", "bottom"): "southwest", ("center", "bottom"): "south",
    ("right", "bottom"): "southeast",
}  # fmt: skip
_COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0),
            "green": (0, 128, 0), "blue": (0, 0, 255)}  # fmt: skip
_FITS = {"fit-in": ("inside", False), "adaptive-fit-in": ("inside", True),
         "full-fit-in": ("outside", False), "adaptive-full-fit-in": ("outside", True)}  # fmt: skip
_BOX = re.compile(r"^(\d+)x(\d+):(\d+)x(\d+)$")


def sign(key: str, path: str) -> str:
    """thumbor's signature of ``path`` (after the signature, without the leading ``/``)."""
    digest = hmac.new(key.encode(), path.encode("utf-8"), hashlib.sha1).digest()
    return base64.urlsafe_b64encode(digest).decode()


def verify(key: str, signature: str, path: str) -> bool:
    return hmac.compare_digest(signature.encode(), sign(key, path).encode())


@dataclass(frozen=True)
class Parsed:
    """A thumbor path's parts, as its own URL regex names them."""

    image: str
    width: int | None = None  # 0 or absent: keep the aspect ratio; None also for "orig"
    height: int | None = None
    fit: str | None = None  # fit-in, adaptive-fit-in, …
    flip: str = ""  # "h" for -W, "v" for -H
    halign: str = "center"
    valign: str = "middle"
    smart: bool = False
    filters: dict[str, str] = field(default_factory=dict)
    trim: str | None = None  # "", ":bottom-right", ":top-left:50", ":20"
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom
    meta: bool = False  # thumbor's JSON of the operations: not served by pixpipe


def split(path: str) -> tuple[str, str]:
    """``/{hmac|unsafe}/{rest}`` → ``(signature, rest)``: ``rest`` is what is signed."""
    signature, _, rest = path.lstrip("/").partition("/")
    if not signature or not rest:
        raise BadUrl("a thumbor URL is /{hmac}/{options}/{image}")
    return signature, rest


def _side(text: str | None) -> int | None:
    if text in (None, "", "orig"):
        return None
    return int(text) or None  # 0: proportional


def parse(path: str) -> Parsed:
    """The part after the signature → its parts (``BadUrl`` for what thumbor would refuse)."""
    match = _PATH.match(path)
    if match is None:
        raise BadUrl("not a thumbor path")
    m = match.groupdict()
    filters: dict[str, str] = {}
    if m["filters"]:
        text = m["filters"]
        found = list(_FILTER.finditer(text))
        if ":".join(f.group(0) for f in found) != text:
            raise BadUrl(f"filters {text!r} are not name(args):name(args)")
        for f in found:
            name, args = f.group(1), f.group(2)
            if name not in FILTERS:
                raise BadUrl(f"unknown thumbor filter {name!r}")
            filters[name] = args
    flip = ("h" if m["hflip"] else "") + ("v" if m["vflip"] else "")
    crop = _box(m["crop"]) if m["crop"] else None
    return Parsed(
        image=unquote(m["image"]), width=_side(m["width"]), height=_side(m["height"]),
        fit=m["fit"], flip=flip, halign=m["halign"] or "center",
        valign=m["valign"] or "middle", smart=bool(m["smart"]), filters=filters,
        trim=m["trim"], crop=crop, meta=bool(m["meta"]),
    )  # fmt: skip


def _box(text: str) -> tuple[int, int, int, int]:
    """``AxB:CxD``: left, top, right, bottom."""
    found = _BOX.match(text.strip())
    if found is None:
        raise BadUrl(f"thumbor box {text!r} is not AxB:CxD (left x top : right x bottom)")
    left, top, right, bottom = (int(g) for g in found.groups())
    if right <= left or bottom <= top:
        raise BadUrl(f"thumbor box {text!r} has no area (right must pass left, bottom top)")
    return left, top, right, bottom


def colour(text: str) -> tuple[int, int, int]:
    """``fill(ff0000)``, ``fill(red)``: thumbor's colours (``auto``/``blur`` not yet)."""
    word = text.strip().lower()
    if word in _COLOURS:
        return _COLOURS[word]
    if (found := hex_colour(word)) is not None:
        return found
    raise BadUrl(f"thumbor colour {text!r} is not supported (a name or hex RRGGBB)")


def processing(parsed: Parsed) -> Processing:
    """Check what is asked and turn it into pixpipe's terms."""
    if parsed.meta:
        raise BadUrl("thumbor meta/ (the operations as JSON) is not served by pixpipe")
    f = parsed.filters
    quality = None
    if "quality" in f:
        if not re.fullmatch(r"[0-9]{1,3}", f["quality"]) or not 1 <= int(f["quality"]) <= 100:
            raise BadUrl(f"thumbor filter quality({f['quality']}): 1 to 100")
        quality = int(f["quality"])
    fmt = None
    if "format" in f:
        fmt = FORMATS.get(f["format"].strip().lower())
        if fmt is None:
            raise BadUrl(f"thumbor filter format({f['format']}): one of {', '.join(FORMATS)}")
    background = None
    for name in ("fill", "background_color"):
        if name in f:
            background = colour(f[name])
    both = parsed.width is not None and parsed.height is not None
    adapt = False
    if parsed.fit or not both:
        (fit, adapt), gravity = _FITS.get(parsed.fit or "fit-in", ("inside", False)), "centre"
        adapt = adapt and both
    else:  # thumbor's default: fill the box, cropping what is over
        fit = "cover"
        # smart: thumbor's detectors, faces first, then features: here faces, then attention
        gravity = "face" if parsed.smart else _GRAVITY[(parsed.halign, parsed.valign)]
    try:
        edits = _edits(parsed)
    except EditError as exc:
        raise BadUrl(f"thumbor {exc}") from None
    return Processing(
        parsed.width, parsed.height, fit, gravity, "no_upscale" not in f, fmt, quality,
        background, flip=parsed.flip, blur=_sigma(f, "blur", 0), sharpen=_sigma(f, "sharpen", 1),
        adapt=adapt, **edits,
    )  # fmt: skip


def _integer(name: str, text: str, low: int, high: int) -> int:
    if not re.fullmatch(r"-?[0-9]{1,6}", text.strip()) or not low <= int(text) <= high:
        raise BadUrl(f"thumbor filter {name}({text}): a whole number from {low} to {high}")
    return int(text)


def _edits(parsed: Parsed) -> dict[str, Any]:
    """trim, the crop box and the filters that edit (tone, grayscale, rotate, focal,
    watermark, max_bytes), in the variant's terms."""
    f, found = parsed.filters, dict[str, Any]()
    if parsed.trim is not None:  # trim[:top-left|bottom-right][:tolerance]
        parts = [p for p in parsed.trim.split(":") if p]
        corner = parts.pop(0) if parts and not parts[0].isdigit() else "top-left"
        found["trim"] = Trim(float(parts[0]) if parts else 0, corner=corner)
    if parsed.crop is not None:  # pixels of the original: the northwest corner moved by A, B
        left, top, right, bottom = parsed.crop
        found["crop"] = Crop(right - left, bottom - top, "northwest", left, top)
    for name in ("brightness", "contrast"):
        if name in f:
            found[name] = float(_integer(name, f[name], -100, 100))
    if "grayscale" in f:
        found["grayscale"] = True
    if "rotate" in f:  # counter-clockwise (PIL); other than a multiple of 90 thumbor ignores it
        angle = _integer("rotate", f["rotate"], -3600, 3600)
        found["turn"] = (-angle) % 360 if angle % 90 == 0 else 0
    if "focal" in f:  # focal(AxB:CxD): the middle of the box, pixels of the original
        left, top, right, bottom = _box(f["focal"])
        found["focus"] = ((left + right) / 2, (top + bottom) / 2)
    if "max_bytes" in f:
        found["max_bytes"] = _integer("max_bytes", f["max_bytes"], 512, 100_000_000)
    if "watermark" in f:
        found["watermark"] = _watermark(f["watermark"])
    return found


def _watermark(text: str) -> Watermark:
    """``watermark(image, x, y, alpha[, w_ratio[, h_ratio]])``: x from the left (negative:
    from the right), ``center`` or ``repeat``; y likewise; alpha 0 (opaque) to 100."""
    args = [a.strip() for a in text.split(",")]
    if len(args) < 4:
        raise BadUrl(f"thumbor filter watermark({text}): image, x, y, alpha[, w_ratio]")
    image, x, y, alpha = unquote(args[0]), args[1], args[2], args[3]
    tile = "repeat" in (x, y)
    where, offsets = [], []
    for value, (start, end) in ((y, ("north", "south")), (x, ("west", "east"))):
        if value in ("center", "repeat"):
            offsets.append(0)
            continue
        number = _integer("watermark", value, -100_000, 100_000)
        where.append(end if value.startswith("-") else start)
        offsets.append(abs(number))
    gravity = "".join(where) or "centre"
    ratio = _integer("watermark", args[4], 0, 100) / 100 if len(args) > 4 and args[4] != "none" \
        else 0.0  # fmt: skip
    opacity = 1 - _integer("watermark", alpha, 0, 100) / 100
    return Watermark(image, opacity, gravity, offsets[1], offsets[0], ratio, tile=tile)


def _sigma(filters: dict[str, str], name: str, which: int) -> float:
    """``blur(radius[, sigma])`` → sigma (the radius when none is given); ``sharpen(amount,
    radius, luminance_only)`` → its radius as libvips' sigma. 0: not asked for."""
    if name not in filters:
        return 0.0
    args = [a.strip() for a in filters[name].split(",")]
    if name == "blur" and len(args) > 1 and args[1]:
        which = 1
    try:
        value = float(args[which] if which < len(args) else args[0])
    except ValueError:
        raise BadUrl(f"thumbor filter {name}({filters[name]}): numbers, please") from None
    if not 0 <= value <= 100:
        raise BadUrl(f"thumbor filter {name}({filters[name]}): 0 to 100")
    return value


__all__ = [
    "FILTERS",
    "FORMATS",
    "BadUrl",
    "Parsed",
    "Processing",
    "colour",
    "parse",
    "processing",
    "sign",
    "split",
    "verify",
]
