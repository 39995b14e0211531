"""Image fixtures built on the spot: real files through libvips, plus crafted hostile ones."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pypdfium2 as pdfium
import pyvips

RED = (220, 30, 30)


def photo(width: int = 1600, height: int = 1000, seed: int = 1) -> pyvips.Image:
    """A photo-like 8-bit sRGB image: gradients plus noise (so JPEG has real work to do)."""
    xyz = pyvips.Image.xyz(width, height)
    r = xyz[0] * (255 / max(1, width))
    g = xyz[1] * (255 / max(1, height))
    b = (xyz[0] + xyz[1]) * (127 / max(1, width + height)) + 64
    noise = pyvips.Image.gaussnoise(width, height, sigma=12, seed=seed)
    return (r.bandjoin([g, b]) + noise).cast("uchar").copy(interpretation="srgb")


def solid(width: int, height: int, rgb: tuple[int, int, int] = RED) -> pyvips.Image:
    image = pyvips.Image.black(width, height, bands=3) + list(rgb)
    return image.cast("uchar").copy(interpretation="srgb")


def jpeg(image: pyvips.Image | None = None, **options: object) -> bytes:
    return (image or photo()).jpegsave_buffer(Q=90, **options)


def png(image: pyvips.Image | None = None, **options: object) -> bytes:
    return (image or photo()).pngsave_buffer(**options)


# Stored pixels for each EXIF orientation, built from the upright image: rendering must undo it.
ORIENTED = {
    1: lambda u: u,
    2: lambda u: u.fliphor(),
    3: lambda u: u.rot180(),
    4: lambda u: u.flipver(),
    5: lambda u: u.rot90().fliphor(),  # transpose
    6: lambda u: u.rot270(),
    7: lambda u: u.rot270().fliphor(),  # transverse
    8: lambda u: u.rot90(),
}


def upright_marker() -> pyvips.Image:
    """300×200 grey with a red block in the top-left corner."""
    grey = solid(300, 200, (128, 128, 128))
    return grey.insert(solid(100, 66, RED), 0, 0)


def oriented_jpeg(orientation: int) -> bytes:
    stored = ORIENTED[orientation](upright_marker()).copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return stored.jpegsave_buffer(Q=95, keep="all")


def cmyk_jpeg(with_profile: bool = True) -> bytes:
    image = solid(400, 300, RED).icc_transform("cmyk")
    if not with_profile:
        image = image.copy()
        image.remove("icc-profile-data")
    return image.jpegsave_buffer(Q=95, keep="all" if with_profile else "none")


def p3_png() -> bytes:
    """A red in Display P3 numbers, with the P3 profile embedded."""
    return solid(400, 300, RED).icc_transform("p3").pngsave_buffer(keep="all")


def png16() -> bytes:
    wide = (solid(400, 300, RED).cast("ushort") * 257).copy(interpretation="rgb16")
    return wide.pngsave_buffer(bitdepth=16)


def grey_jpeg() -> bytes:
    return photo(400, 300)[1].copy(interpretation="b-w").jpegsave_buffer(Q=90)


def alpha_png(width: int = 400, height: int = 300) -> bytes:
    """Opaque red disc in the middle, fully transparent corners."""
    mask = pyvips.Image.xyz(width, height) - [width // 2, height // 2]
    inside = ((mask[0] ** 2 + mask[1] ** 2) ** 0.5 < min(width, height) // 3).ifthenelse(255, 0)
    return solid(width, height, RED).bandjoin(inside.cast("uchar")).pngsave_buffer()


def heic(image: pyvips.Image | None = None, quality: int = 80) -> bytes:
    """An HEIC (HEVC in HEIF) file, as phones write them, encoded by pillow-heif's x265."""
    import pillow_heif
    from PIL import Image

    image = image if image is not None else photo(640, 480)
    mode = "RGBA" if image.bands == 4 else "RGB"
    pil = Image.frombytes(mode, (image.width, image.height), image.write_to_memory())
    out = io.BytesIO()
    pillow_heif.from_pillow(pil).save(out, quality=quality)
    return out.getvalue()


def animated_gif(frames: int = 5, width: int = 200, height: int = 100) -> bytes:
    pages = [solid(width, height, (i * 40 % 256, 80, 200)) for i in range(frames)]
    roll = pyvips.Image.arrayjoin(pages, across=1).copy()
    roll.set_type(pyvips.GValue.gint_type, "page-height", height)
    roll.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    return roll.gifsave_buffer()


def pdf(pages: list[tuple[int, int, int]] = [RED, (30, 30, 220)]) -> bytes:  # noqa: B006
    """A PDF of A-ish portrait pages (200×300 pt), each filled with one colour."""
    doc = pdfium.PdfDocument.new()
    for colour in pages:
        page = doc.new_page(200, 300)
        image = pdfium.PdfImage.new(doc)
        image.load_jpeg(io.BytesIO(solid(20, 30, colour).jpegsave_buffer(Q=95)))
        image.set_matrix(pdfium.PdfMatrix().scale(200, 300))
        page.insert_obj(image)
        page.gen_content()
    buffer = io.BytesIO()
    doc.save(buffer)
    return buffer.getvalue()


def svg(width: int = 200, height: int = 100, body: str = "") -> bytes:
    body = body or f'<rect width="{width}" height="{height}" fill="rgb{RED}"/>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{body}</svg>'
    ).encode()


SVG_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><text>&xxe;</text></svg>"""

SVG_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE svg [
 <!ENTITY a "lollollollollollollollollollol">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><text>&f;</text></svg>"""

SVG_EXTERNAL = svg(body='<image href="http://127.0.0.1:9/x.png" width="10" height="10"/>')


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 60000) -> bytes:
    """A valid PNG header for side×side grey pixels, and a few rows of zeros (a bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )  # fmt: skip


def jpeg_lying(width: int = 65000, height: int = 65000) -> bytes:
    """A real small JPEG whose frame header is patched to claim width×height."""
    data = bytearray(jpeg(photo(64, 48)))
    at = data.find(b"\xff\xc0")
    assert at > 0, "baseline JPEG expected"
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_many_frames(frames: int = 3000) -> bytes:
    return animated_gif(frames, 4, 4)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def random_bytes(size: int = 50_000, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def decoded(data: bytes, **options: object) -> pyvips.Image:
    """Load an output back for assertions."""
    return pyvips.Image.new_from_buffer(data, "", **options)


def pixel(image: pyvips.Image, x: int, y: int) -> list[float]:
    return list(image(x, y))
