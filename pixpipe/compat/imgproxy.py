"""imgproxy's URLs, read as imgproxy reads them (https://docs.imgproxy.net/usage/processing):

    /{signature}/{option}/{option}/…/plain/{source}[@{extension}]
    /{signature}/{option}/{option}/…/{base64url source, may be split by /}[.{extension}]

- **Signature**: base64url without padding of HMAC-SHA256(key, salt + path), over the raw path
  after the signature (``/rs:fill:300:400/…``); the digest truncated to ``signature_size``
  bytes first; any of several key/salt pairs (rotation). With no key configured, any
  signature goes, as in imgproxy.
- **Options**: ``name:arg:arg``; names and their short forms as imgproxy has them; a later
  option wins over an earlier one, presets (``pr:a:b``) expand in place, and the ``default``
  preset applies first. An unknown name is an error naming it.

Pure (no I/O): ``http/imgproxy.py`` serves it through pixpipe's own transform path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..edits import CONFIGURED, Crop, EditError, Trim, Watermark, fraction
from . import BadUrl, Processing, hex_colour

# Canonical names (imgproxy's full names) and every alias imgproxy accepts.
ALIASES = {
    "resize": "resize", "rs": "resize", "size": "size", "s": "size",
    "resizing_type": "resizing_type", "rt": "resizing_type", "width": "width", "w": "width",
    "height": "height", "h": "height", "dpr": "dpr", "enlarge": "enlarge", "el": "enlarge",
    "extend": "extend", "ex": "extend", "gravity": "gravity", "g": "gravity",
    "crop": "crop", "c": "crop", "trim": "trim", "t": "trim", "padding": "padding",
    "pd": "padding", "rotate": "rotate", "rot": "rotate", "flip": "flip", "fl": "flip",
    "background": "background", "bg": "background", "blur": "blur", "bl": "blur",
    "sharpen": "sharpen", "sh": "sharpen", "quality": "quality", "q": "quality",
    "format": "format", "f": "format", "ext": "format", "preset": "preset", "pr": "preset",
    "cachebuster": "cachebuster", "cb": "cachebuster", "expires": "expires", "exp": "expires",
    "watermark": "watermark", "wm": "watermark", "strip_metadata": "strip_metadata",
    "sm": "strip_metadata",
}  # fmt: skip
RESIZING_TYPES = ("fit", "fill", "fill-down", "force", "auto")  # auto: fill or fit by orientation
GRAVITIES = ("no", "so", "ea", "we", "noea", "nowe", "soea", "sowe", "ce")
FORMATS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp", "avif": "avif",
           "gif": "gif", "tiff": "tiff", "best": "auto"}  # fmt: skip
_TRUE = ("1", "t", "true")


# ---- signatures ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign(key: bytes, salt: bytes, path: str, size: int = 32) -> str:
    """imgproxy's signature of ``path`` (the part after the signature, with its ``/``)."""
    digest = hmac.new(key, salt + path.encode(), hashlib.sha256).digest()
    return _b64(digest[:size])


def verify(pairs: Sequence[tuple[bytes, bytes]], signature: str, path: str, size: int) -> bool:
    """Whether ``signature`` is ``path``'s under any (key, salt) pair."""
    return any(
        hmac.compare_digest(signature.encode(), sign(key, salt, path, size).encode())
        for key, salt in pairs
    )


def hex_pairs(keys: Sequence[str], salts: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """imgproxy's hex-encoded keys and salts, paired in order (as IMGPROXY_KEYS/SALTS)."""
    if len(keys) != len(salts):
        raise ValueError(f"{len(keys)} imgproxy keys but {len(salts)} salts: give them in pairs")
    try:
        return [(bytes.fromhex(k), bytes.fromhex(s)) for k, s in zip(keys, salts, strict=True)]
    except ValueError:
        raise ValueError("imgproxy keys and salts are hex (like `openssl rand -hex 32`)") from None


# ---- the path --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    """A processing path: its options (canonical name → arguments, the last one given wins),
    the source URL and the output extension it asked for, if any."""

    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""
    extension: str | None = None


def split(path: str) -> tuple[str, str]:
    """``/{signature}/{rest}`` → ``(signature, "/{rest}")``: the rest is what is signed."""
    signature, _, rest = path.lstrip("/").partition("/")
    if not signature or not rest:
        raise BadUrl("an imgproxy URL is /{signature}/{options}/{source}")
    return signature, "/" + rest


def _options(
    segments: Sequence[str], presets: Mapping[str, str], into: dict[str, tuple[str, ...]],
    depth: int = 0,
) -> None:  # fmt: skip
    for segment in segments:
        name, *args = segment.split(":")
        canonical = ALIASES.get(name)
        if canonical is None:
            raise BadUrl(f"unknown imgproxy option {name!r}")
        if canonical == "preset":
            if depth > 3:
                raise BadUrl("presets nested too deep")
            for preset in args:
                if preset not in presets:
                    raise BadUrl(f"unknown imgproxy preset {preset!r}")
                _options(presets[preset].strip("/").split("/"), presets, into, depth + 1)
            continue
        into[canonical] = tuple(args)


def parse(path: str, presets: Mapping[str, str] | None = None) -> Parsed:
    """The part after the signature → options, source and extension."""
    presets = presets or {}
    segments = path.strip("/").split("/")
    options: dict[str, tuple[str, ...]] = {}
    if "default" in presets:
        _options(presets["default"].strip("/").split("/"), presets, options)
    if "plain" in segments:
        at = segments.index("plain")
        _options(segments[:at], presets, options)
        source = unquote("/".join(segments[at + 1 :]))
        extension = None
        if "@" in source:
            source, extension = source.rsplit("@", 1)
    else:
        count = next((i for i, s in enumerate(segments) if ":" not in s), len(segments))
        _options(segments[:count], presets, options)
        encoded = unquote("".join(segments[count:]))
        encoded, _, extension_text = encoded.partition(".")
        extension = extension_text or None
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            source = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise BadUrl("the source is neither plain/… nor base64url") from None
    if not source:
        raise BadUrl("the URL names no source image")
    if extension is not None and extension.lower() not in FORMATS:
        raise BadUrl(f"unknown output extension {extension!r}")
    return Parsed(options, source, extension.lower() if extension else None)


# ---- typed arguments -------------------------------------------------------------------------


def number(name: str, text: str, low: float = 0, high: float = 1e9) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadUrl(f"imgproxy option {name}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise BadUrl(f"imgproxy option {name}: {text} is out of range {low:g}..{high:g}")
    return value


def integer(name: str, text: str, low: int = 0, high: int = 100_000) -> int:
    if not re.fullmatch(r"-?[0-9]+", text or ""):
        raise BadUrl(f"imgproxy option {name}: {text!r} is not a whole number")
    return int(number(name, text, low, high))


def boolean(text: str) -> bool:
    return text.lower() in _TRUE


def colour(name: str, args: Sequence[str]) -> tuple[int, int, int] | None:
    """``bg:R:G:B`` or ``bg:RRGGBB``; empty: none."""
    if not args or args == ("",):
        return None
    if len(args) == 1 and (found := hex_colour(args[0])) is not None:
        return found
    if len(args) == 3:
        r, g, b = (integer(name, a, 0, 255) for a in args)
        return (r, g, b)
    raise BadUrl(f"imgproxy option {name}: give R:G:B or a hex colour")


# ---- onto pixpipe's renderer ----------------------------------------------------------------

_FITS = {"fit": "inside", "fill": "cover", "fill-down": "cover", "force": "fill", "auto": "auto"}
_COMPASS = {
    "no": "north", "so": "south", "ea": "east", "we": "west", "noea": "northeast",
    "nowe": "northwest", "soea": "southeast", "sowe": "southwest", "ce": "centre",
    "sm": "attention", "obj": "face",  # g:obj:face, imgproxy Pro's object gravity, for faces
}  # fmt: skip
_POSITIONS = {**{k: v for k, v in _COMPASS.items() if k not in ("sm", "obj")}, "re": "tile"}


def processing(parsed: Parsed) -> Processing:
    """Every option's arguments checked and turned into pixpipe's terms."""
    o = parsed.options
    try:
        edits = _edits(o)
    except EditError as exc:
        raise BadUrl(f"imgproxy {exc}") from None
    kind, width, height, enlarge, extend = "fit", 0, 0, False, False
    for name in ("resize", "size"):  # rs:type:w:h:enlarge:extend, s:w:h:enlarge:extend
        args = list(o.get(name, ()))
        if name == "resize" and args:
            kind = args.pop(0) or kind
        for i, arg in enumerate(args[:4]):
            if arg == "":
                continue
            if i == 0:
                width = integer(name, arg)
            elif i == 1:
                height = integer(name, arg)
            elif i == 2:
                enlarge = boolean(arg)
            else:
                extend = boolean(arg)
    kind = (o.get("resizing_type") or (kind,))[0] or kind
    if kind not in RESIZING_TYPES:
        raise BadUrl(f"imgproxy option resizing_type: {kind!r} is not one of "
                     f"{', '.join(RESIZING_TYPES)}")  # fmt: skip
    width = integer("width", o["width"][0]) if "width" in o else width
    height = integer("height", o["height"][0]) if "height" in o else height
    enlarge = boolean(o["enlarge"][0]) if "enlarge" in o else enlarge
    where = None  # ex:1:{gravity}: where the image sits in the box it is extended to
    if "extend" in o:
        extend_args = o["extend"]
        extend = boolean(extend_args[0]) if extend_args else False
        if len(extend_args) > 1 and extend_args[1]:
            where = _gravity(extend_args[1:])
    gravity, focus = "centre", None
    if "gravity" in o and o["gravity"][0] == "fp":  # g:fp:x:y, fractions of the image
        g = o["gravity"]
        if len(g) != 3:
            raise BadUrl("imgproxy option gravity:fp needs x and y (fractions, 0 to 1)")
        focus = (fraction(number("gravity", g[1], 0, 1)), fraction(number("gravity", g[2], 0, 1)))
    elif "gravity" in o:
        g = o["gravity"]
        gravity = _gravity(g)
    dpr = number("dpr", o["dpr"][0], 0.01, 8) if "dpr" in o else 1.0
    quality = integer("quality", o["quality"][0], 0, 100) if "quality" in o else None
    fmt = parsed.extension or (o["format"][0] if "format" in o else None)
    if fmt is not None and fmt.lower() not in FORMATS:
        raise BadUrl(f"imgproxy option format: {fmt!r} is not one of {', '.join(FORMATS)}")
    background = colour("background", o["background"]) if "background" in o else None
    strip = boolean(o["strip_metadata"][0]) if "strip_metadata" in o else True
    expires = integer("expires", o["expires"][0], 0, 2**40) if "expires" in o else None
    flip = ""
    if "flip" in o:  # fl:horizontal:vertical
        args = [*o["flip"], "", ""]
        flip = ("h" if boolean(args[0]) else "") + ("v" if boolean(args[1]) else "")
    blur = number("blur", o["blur"][0], 0, 100) if "blur" in o else 0.0
    sharpen = number("sharpen", o["sharpen"][0], 0, 100) if "sharpen" in o else 0.0
    padding = _padding(o["padding"]) if "padding" in o else (0, 0, 0, 0)
    fit = "contain" if extend and width and height else _FITS[kind]
    if fit == "contain" and where is not None:
        gravity = where
    if fit != "inside" and not (width and height):
        fit = "inside"  # one side given: imgproxy keeps the aspect ratio whatever the type
    return Processing(
        width or None, height or None, fit, gravity, enlarge,
        FORMATS[fmt.lower()] if fmt else None, quality or None, background, dpr, strip, expires,
        focus, flip, blur, sharpen, padding, **edits,
    )  # fmt: skip


def _gravity(args: Sequence[str]) -> str:
    """A compass gravity, ``sm`` or ``obj[:face]``; offsets only on a crop's gravity."""
    if args[0] not in _COMPASS or (args[0] == "obj" and any(a != "face" for a in args[1:])):
        raise BadUrl(f"imgproxy option gravity: {':'.join(args)!r} is not supported "
                     f"(use one of {', '.join(_COMPASS)}, fp:x:y or obj:face)")  # fmt: skip
    if args[0] != "obj" and any(number("gravity", x, -1e6, 1e6) for x in args[1:3] if x):
        raise BadUrl("imgproxy option gravity: offsets are only supported on crop (c:w:h:g:x:y)")
    return _COMPASS[args[0]]


def _edits(o: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """crop, trim, rotate and watermark, in the variant's terms."""
    found: dict[str, Any] = {}
    if "crop" in o:  # c:width:height[:gravity[:x:y]], 0 = the whole side, ≤ 1 = a fraction
        args = [*o["crop"], "", ""]
        sides = [number("crop", a or "0", 0, 100_000) for a in args[:2]]
        where = list(o["crop"][2:]) or list(o.get("gravity", ("ce",)))
        if where[0] == "fp":
            raise BadUrl("imgproxy option crop: a focal-point gravity is not supported yet")
        x, y = (number("crop", a, -1e5, 1e5) if a else 0.0 for a in [*where[1:3], "", ""][:2])
        found["crop"] = Crop(sides[0], sides[1], _gravity(where[:1]), x, y)
    if "trim" in o:  # t:threshold[:colour[:equal_hor[:equal_ver]]]
        args = [*o["trim"], "", "", ""]
        colour = hex_colour(args[1]) if args[1] else None
        if args[1] and colour is None:
            raise BadUrl(f"imgproxy option trim: {args[1]!r} is not a hex colour")
        found["trim"] = Trim(number("trim", args[0] or "10", 0, 442), colour,
                             equal_x=boolean(args[2]), equal_y=boolean(args[3]))  # fmt: skip
    if "rotate" in o:  # rot:angle, a multiple of 90
        angle = integer("rotate", o["rotate"][0] if o["rotate"] else "0", -3600, 3600)
        if angle % 90:
            raise BadUrl(f"imgproxy option rotate: {angle} is not a multiple of 90")
        found["rotate"] = angle % 360
    if "watermark" in o and o["watermark"] and number("watermark", o["watermark"][0], 0, 1):
        args = [*o["watermark"], "", "", "", ""]  # wm:opacity:position:x:y:scale
        position = _POSITIONS.get(args[1] or "soea")
        if position is None:
            raise BadUrl(f"imgproxy option watermark: position {args[1]!r} is not one of "
                         f"{', '.join(_POSITIONS)}")  # fmt: skip
        x, y = (number("watermark", a, -1e5, 1e5) if a else 0.0 for a in args[2:4])
        scale = number("watermark", args[4], 0, 1) if args[4] else 0.0
        tile = position == "tile"
        found["watermark"] = Watermark(
            CONFIGURED, number("watermark", args[0], 0, 1), "centre" if tile else position,
            x, y, scale, tile=tile,
        )  # fmt: skip
    return found


def _padding(args: Sequence[str]) -> tuple[int, int, int, int]:
    """``pd:top[:right[:bottom[:left]]]``, the CSS way: missing sides repeat the given ones."""
    sides = [integer("padding", a or "0", 0, 4096) for a in args[:4]]
    if not sides:
        return (0, 0, 0, 0)
    top = sides[0]
    right = sides[1] if len(sides) > 1 else top
    bottom = sides[2] if len(sides) > 2 else top
    left = sides[3] if len(sides) > 3 else right
    return (top, right, bottom, left)


__all__ = [
    "ALIASES",
    "FORMATS",
    "GRAVITIES",
    "RESIZING_TYPES",
    "BadUrl",
    "Parsed",
    "Processing",
    "boolean",
    "colour",
    "hex_pairs",
    "integer",
    "number",
    "parse",
    "processing",
    "sign",
    "split",
    "verify",
]
