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
from urllib.parse import unquote

from . import BadUrl, Processing, hex_colour

_PATH = re.compile(
    r"""^
    (?:(?P<meta>meta)/)?
    (?:(?P<trim>trim(?::(?:top-left|bottom-right))?(?::\d+)?)/)?
    (?:(?P<crop>\d+x\d+:\d+x\d+)/)?
    (?:(?P<fit>fit-in|adaptive-fit-in|full-fit-in|adaptive-full-fit-in)/)?
    (?:(?P<hflip>-)?(?P<width>\d+|orig)?x(?P<vflip>-)?(?P<height>\d+|orig)?/)?
    (?:(?P<halign>left|right|center)/)?
    (?:(?P<valign>top|bottom|middle)/)?
    (?:(?P<smart>smart)/)?
    (?:filters:(?P<filters>[^/]*\))/)?
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
# Parsed, checked, and not rendered yet: refused with a clear message, never ignored.
NOT_YET = ("meta", "trim", "crop", "adaptive-fit-in", "full-fit-in", "adaptive-full-fit-in",
           "brightness", "contrast", "grayscale", "rotate", "focal", "watermark",
           "max_bytes")  # fmt: skip


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
    refused: tuple[str, ...] = ()  # what the path asks that pixpipe does not render yet


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
    refused = [name for name in ("meta", "trim", "crop") if m[name]]
    if m["fit"] and m["fit"] != "fit-in":
        refused.append(m["fit"])
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
            if name in NOT_YET:
                refused.append(name)
    flip = ("h" if m["hflip"] else "") + ("v" if m["vflip"] else "")
    return Parsed(
        image=unquote(m["image"]), width=_side(m["width"]), height=_side(m["height"]),
        fit=m["fit"], flip=flip, halign=m["halign"] or "center",
        valign=m["valign"] or "middle", smart=bool(m["smart"]), filters=filters,
        refused=tuple(refused),
    )  # fmt: skip


def colour(text: str) -> tuple[int, int, int]:
    """``fill(ff0000)``, ``fill(red)``: thumbor's colours (``auto``/``blur`` not yet)."""
    word = text.strip().lower()
    if word in _COLOURS:
        return _COLOURS[word]
    if (found := hex_colour(word)) is not None:
        return found
    raise BadUrl(f"thumbor colour {text!r} is not supported (a name or hex RRGGBB)")


def processing(parsed: Parsed) -> Processing:
    """Check what is asked and turn it into pixpipe's terms; refuse what is not rendered yet."""
    if parsed.refused:
        raise BadUrl(f"thumbor {', '.join(parsed.refused)}: not supported by pixpipe yet")
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
    if parsed.fit == "fit-in" or not both:
        fit, gravity = "inside", "centre"
    else:  # thumbor's default: fill the box, cropping what is over
        fit = "cover"
        gravity = "attention" if parsed.smart else _GRAVITY[(parsed.halign, parsed.valign)]
    return Processing(
        parsed.width, parsed.height, fit, gravity, "no_upscale" not in f, fmt, quality,
        background, flip=parsed.flip, blur=_sigma(f, "blur", 0), sharpen=_sigma(f, "sharpen", 1),
    )  # fmt: skip


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
    "NOT_YET",
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
