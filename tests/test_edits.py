"""The edits of the original before the resize (trim, crop by coordinates, rotate), the new fits
(outside, auto, adapt), the colour effects, max_bytes and the watermark: rendered for real and
checked on the pixels. The same through /t/ and the compatible URLs: tests/test_compat_edits.py."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
import pyvips

from pixpipe import Recipe, render
from pixpipe.edits import Crop, EditError, Trim, Watermark, place
from pixpipe.imaging import Output
from pixpipe.recipe import DEFAULT_RECIPE, RecipeError, Variant, variant_from_mapping

from . import images

BLUE = (30, 30, 220)
GREEN = (20, 200, 40)


def one(data: bytes, assets: dict[str, bytes] | None = None, **spec: Any) -> Output:
    recipe = Recipe((Variant(name="t", **spec),), assets or {})
    (output,) = render(data, recipe).variants
    return output


def picture(data: bytes, **spec: Any) -> pyvips.Image:
    return images.decoded(one(data, format=spec.pop("format", "png"), **spec).data)


def framed(inner: tuple[int, int] = (200, 100), border: int = 50) -> bytes:
    """A blue ``inner`` rectangle with a white border of ``border`` px (a product shot)."""
    w, h = inner
    canvas = images.solid(w + 2 * border, h + 2 * border, (255, 255, 255))
    return images.png(canvas.insert(images.solid(w, h, BLUE), border, border))


def quadrants(side: int = 400) -> bytes:
    """Red top-left, blue top-right, green bottom-left, white bottom-right."""
    half = side // 2
    top = images.solid(half, half, images.RED).join(images.solid(half, half, BLUE), "horizontal")
    bottom = images.solid(half, half, GREEN).join(
        images.solid(half, half, (255, 255, 255)), "horizontal"
    )
    return images.png(top.join(bottom, "vertical"))


def colour_at(image: pyvips.Image, x: int, y: int) -> str:
    r, g, b = images.pixel(image, x, y)[:3]
    named = {"red": images.RED, "blue": BLUE, "green": GREEN, "white": (255, 255, 255)}
    return min(named, key=lambda n: sum(abs(a - c) for a, c in zip(named[n], (r, g, b),
                                                                   strict=True)))  # fmt: skip


# ---- trim ------------------------------------------------------------------------------------


def test_trim_cuts_the_border_of_one_colour() -> None:
    out = one(framed(), trim=Trim(), width=1000, height=1000, format="png")
    assert (out.width, out.height) == (200, 100)  # the border is gone, never enlarged
    trimmed = images.decoded(out.data)
    assert colour_at(trimmed, 1, 1) == colour_at(trimmed, 198, 98) == "blue"


def test_trim_then_resize_uses_the_trimmed_geometry() -> None:
    out = one(framed((400, 200), 200), trim=Trim(), width=100, format="png")
    assert (out.width, out.height) == (100, 50)  # 2:1 (the trimmed box), not 800:600


def test_trim_with_a_colour_and_equal_sides() -> None:
    canvas = images.solid(300, 200, (255, 255, 255)).insert(images.solid(100, 100, BLUE), 20, 50)
    data = images.png(canvas)
    assert (one(data, trim=Trim(colour=(255, 255, 255)), width=999, format="png").width) == 100
    equal = one(data, trim=Trim(equal_x=True), width=999, format="png")
    assert (equal.width, equal.height) == (260, 100)  # 20 px from both sides, not 20 and 180
    untouched = one(images.png(images.solid(80, 60, BLUE)), trim=Trim(), width=999, format="png")
    assert (untouched.width, untouched.height) == (80, 60)  # one colour all over: kept whole


def test_trim_from_the_bottom_right_corner() -> None:
    canvas = images.solid(300, 200, (0, 0, 0)).insert(images.solid(300, 150, BLUE), 0, 0)
    data = images.png(canvas)  # black only along the bottom
    assert one(data, trim=Trim(corner="bottom-right"), width=999, format="png").height == 150
    assert one(data, trim=Trim(), width=999, format="png").height == 50  # blue is the border


# ---- crop by coordinates and rotation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("crop", "size", "corner"),
    [
        (Crop(200, 200, "northwest"), (200, 200), "red"),
        (Crop(0.5, 0.5, "southeast"), (200, 200), "white"),
        (Crop(200, 200, "northwest", x=200, y=200), (200, 200), "white"),  # thumbor's AxB:CxD
        (Crop(200, 200, "northeast"), (200, 200), "blue"),
        (Crop(0.5, 0, "west"), (200, 400), "red"),  # 0: the whole side
        (Crop(1, 10, "southeast"), (1, 10), "white"),  # from 1 on: pixels
    ],
)
def test_crop_cuts_the_region_before_the_resize(
    crop: Crop, size: tuple[int, int], corner: str
) -> None:
    image = picture(quadrants(), crop=crop, width=1000, height=1000)
    assert (image.width, image.height) == size
    assert colour_at(image, min(5, image.width - 1), 5) == corner


def test_crop_of_a_large_original_is_resized_from_its_own_pixels() -> None:
    """The region, not the whole, is what the box is filled from: a 4000 px original cropped to
    its top-left quarter and resized to 100 px is all red (a crop after the resize would be
    a quarter of the thumbnail: 25 px)."""
    big = images.jpeg(images.decoded(quadrants(400)).resize(10, kernel="nearest"))
    out = one(big, crop=Crop(0.5, 0.5, "northwest"), width=100, format="png")
    image = images.decoded(out.data)
    assert (image.width, image.height) == (100, 100)
    assert colour_at(image, 95, 95) == "red"


@pytest.mark.parametrize(
    ("angle", "top_left", "size"),
    [(90, "green", (200, 100)), (180, "white", (100, 100)), (270, "blue", (200, 100))],
)
def test_rotate_turns_clockwise_and_the_box_is_the_turned_image(
    angle: int, top_left: str, size: tuple[int, int]
) -> None:
    tall = images.png(images.decoded(quadrants(400)).resize(0.5, vscale=1.0, kernel="nearest"))
    box = (200, 200) if angle != 180 else (100, 200)
    image = picture(tall, rotate=angle, width=box[0], height=box[1])  # 200×400 source
    assert (image.width, image.height) == (size if angle != 180 else (100, 200))
    assert colour_at(image, 3, 3) == top_left


def test_smart_crop_gravity_places_the_region_where_the_interest_is() -> None:
    canvas = images.solid(800, 400, (128, 128, 128)).insert(images.photo(200, 200), 560, 100)
    image = picture(images.png(canvas), crop=Crop(300, 400, "attention"), width=300)
    assert image.width == 300
    grey = sum(1 for x in range(0, 300, 10) if images.pixel(image, x, 200)[:3] == [128] * 3)
    assert grey <= 10  # the window holds the photo (200 of its 300 px), not the grey around


# ---- fits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ({"fit": "outside", "width": 300, "height": 300}, (600, 300)),  # covers, uncropped
        ({"fit": "auto", "width": 300, "height": 200}, (300, 200)),  # same orientation: cover
        ({"fit": "auto", "width": 200, "height": 300}, (200, 100)),  # other: inside
        ({"adapt": True, "width": 100, "height": 300}, (200, 100)),  # the box turned to 300×100
        ({"width": 100, "height": 300}, (100, 50)),  # unturned
        ({"adapt": True, "width": 300, "height": 100}, (200, 100)),  # same: as asked
    ],
)
def test_fits_outside_auto_and_adapt(spec: dict[str, Any], size: tuple[int, int]) -> None:
    out = one(images.jpeg(images.photo(800, 400)), **spec)
    assert (out.width, out.height) == size


# ---- colour effects, max_bytes ---------------------------------------------------------------


def test_brightness_contrast_and_grayscale() -> None:
    data = images.png(images.solid(50, 50, (100, 150, 200)))
    assert images.pixel(picture(data, width=50, brightness=20), 5, 5)[:3] == [151, 201, 251]
    assert images.pixel(picture(data, width=50, brightness=-100), 5, 5)[:3] == [0, 0, 0]
    stronger = images.pixel(picture(data, width=50, contrast=50), 5, 5)[:3]
    assert stronger[0] < 100 and stronger[2] > 200  # away from mid-grey
    grey = images.pixel(picture(data, width=50, grayscale=True), 5, 5)[:3]
    assert max(grey) - min(grey) <= 1 and 130 < grey[0] < 150


def test_max_bytes_lowers_the_quality_until_it_fits() -> None:
    data = images.jpeg(images.photo(1200, 800))
    free = one(data, width=800, quality=95)
    capped = one(data, width=800, quality=95, max_bytes=free.bytes // 3)
    assert capped.bytes <= free.bytes // 3 < free.bytes
    assert (capped.width, capped.height) == (free.width, free.height)
    tiny = one(data, width=800, quality=95, max_bytes=512)  # unreachable: the smallest there is
    assert tiny.bytes <= one(data, width=800, quality=1).bytes
    png = one(data, width=200, format="png", max_bytes=512)
    assert png.bytes > 512  # lossless: left as it is


# ---- watermark -------------------------------------------------------------------------------


def logo() -> bytes:
    """40×20, opaque red."""
    return images.png(images.solid(40, 20, images.RED))


def marked(**options: Any) -> pyvips.Image:
    data = images.png(images.solid(200, 100, (255, 255, 255)))
    mark = Watermark("logo.png", **options)
    out = one(data, {"logo.png": logo()}, width=200, format="png", watermark=mark)
    return images.decoded(out.data)


def test_watermark_at_a_corner_with_offsets_and_opacity() -> None:
    image = marked()  # southeast
    assert colour_at(image, 190, 95) == "red" and colour_at(image, 150, 75) == "white"
    image = marked(gravity="northwest", x=10, y=5)
    assert colour_at(image, 5, 2) == "white" and colour_at(image, 12, 7) == "red"
    half = images.pixel(marked(opacity=0.5), 190, 95)[:3]
    assert 135 < half[1] < 150  # half red (30) over white (255)


def test_watermark_scaled_and_tiled() -> None:
    image = marked(scale=0.5, gravity="northwest")  # 100 px wide (from 40)
    assert colour_at(image, 95, 45) == "red" and colour_at(image, 105, 45) == "white"
    tiled = marked(tile=True)
    assert all(colour_at(tiled, x, y) == "red" for x, y in ((5, 5), (195, 95), (100, 50)))


def test_watermark_needs_its_image_loaded_with_the_recipe() -> None:
    with pytest.raises(RecipeError, match="was not loaded"):
        one(images.jpeg(), width=100, watermark=Watermark("logo.png"))


# ---- the variant's checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rotate": 45}, "rotate must be one of 0, 90, 180, 270"),
        ({"crop": {"width": -1, "height": 10}}, "crop width must be a number from 0"),
        ({"crop": {"width": 10, "height": 10, "gravity": "top"}}, "crop gravity must be one"),
        ({"crop": {"width": 10, "size": 3}}, "unknown key"),
        ({"trim": {"threshold": 500}}, "trim threshold must be a number from 0 to 442"),
        ({"watermark": {"image": "a.png", "opacity": 2}}, "opacity must be a number"),
        ({"brightness": 200}, "brightness must be from -100 to 100"),
        ({"max_bytes": 10}, "max_bytes must be 0"),
    ],
)
def test_a_bad_edit_names_the_variant_and_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message) as caught:
        variant_from_mapping({"name": "thumb", "width": 100, **spec})
    assert 'variant "thumb"' in str(caught.value)


def test_edits_from_a_table_and_the_fingerprint() -> None:
    variant = variant_from_mapping({"name": "v", "width": 100, "crop": {"width": 0.5,
                                    "height": 0.5}, "trim": {}})  # fmt: skip
    assert variant.crop == Crop(0.5, 0.5) and variant.trim == Trim()
    plain = DEFAULT_RECIPE.variants[0]
    assert dataclasses.replace(plain, rotate=90).fingerprint != plain.fingerprint
    logo_a = dataclasses.replace(plain, watermark=Watermark("l.png", version="a"))
    logo_b = dataclasses.replace(plain, watermark=Watermark("l.png", version="b"))
    assert logo_a.fingerprint != logo_b.fingerprint  # a new logo: new variants
    with pytest.raises(EditError):
        Crop(10, 10, gravity="nowhere")


def test_place_moves_away_from_the_anchored_edge() -> None:
    assert place((100, 100), (20, 10), "southeast", (5, 5)) == (75, 85)
    assert place((100, 100), (20, 10), "northwest", (5, 5)) == (5, 5)
    assert place((100, 100), (20, 10), "centre") == (40, 45)
    assert place((100, 100), (20, 10), "northwest", (500, 0)) == (80, 0)  # kept inside


# ---- faces -------------------------------------------------------------------------------------

ASTRONAUT = Path(__file__).parent / "fixtures" / "astronaut.jpg"  # face: y 66-162 of 512


def window_top(data: bytes, out: Output) -> int:
    """Where a full-width cover crop of the 512×512 astronaut was cut: the offset whose rows
    match the output best."""
    source, found = images.decoded(data), images.decoded(out.data)
    return min(range(source.height - found.height + 1),
               key=lambda top: (source.crop(0, top, found.width, found.height)
                                - found).abs().avg())  # fmt: skip


def test_a_face_crop_keeps_the_face_where_attention_cuts_it_off() -> None:
    data = ASTRONAUT.read_bytes()
    face = one(data, width=512, height=150, fit="cover", gravity="face", format="png")
    attention = one(data, width=512, height=150, fit="cover", gravity="attention", format="png")
    top = window_top(data, face)
    assert top <= 66 and top + 150 >= 162  # her whole face, forehead to chin
    top = window_top(data, attention)
    assert not (top <= 66 and top + 150 >= 162)  # the suit's badges, not her face


def test_a_face_crop_without_a_face_is_an_attention_crop() -> None:
    data = images.jpeg(images.photo(800, 500))
    face = one(data, width=300, height=300, fit="cover", gravity="face", format="png")
    attention = one(data, width=300, height=300, fit="cover", gravity="attention", format="png")
    assert face.data == attention.data


def test_without_opencv_a_face_crop_is_an_attention_crop_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pixpipe.imaging import faces, steps

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 → ImportError: no extra
    monkeypatch.setattr(steps, "_NO_DETECTOR", [])
    faces.cascade.cache_clear()
    try:
        data = ASTRONAUT.read_bytes()
        face = one(data, width=512, height=150, fit="cover", gravity="face", format="png")
        attention = one(data, width=512, height=150, fit="cover", gravity="attention",
                        format="png")  # fmt: skip
    finally:
        faces.cascade.cache_clear()
    assert face.data == attention.data
    assert "pixpipe[faces]" in caplog.text


def test_contain_pads_at_its_gravity() -> None:
    image = picture(images.png(images.solid(200, 100, BLUE)), width=200, height=200,
                    fit="contain", gravity="north")  # fmt: skip
    assert colour_at(image, 100, 5) == "blue" and colour_at(image, 100, 195) == "white"
    centred = picture(images.png(images.solid(200, 100, BLUE)), width=200, height=200,
                      fit="contain")  # fmt: skip
    assert colour_at(centred, 100, 5) == "white" and colour_at(centred, 100, 100) == "blue"


def test_a_render_without_its_placeholder_gives_the_same_variants() -> None:
    """On-the-fly transforms skip the ThumbHash and dominant colour (a quarter of a small
    render's time, measured with py-spy in RESULTS.md); the pixels are the same."""
    data = images.jpeg(images.photo(1200, 800))
    recipe = Recipe((Variant(name="t", width=300),))
    full, bare = render(data, recipe), render(data, recipe, placeholder=False)
    assert full.placeholder and full.dominant.startswith("#")
    assert (bare.placeholder, bare.dominant) == ("", "")
    assert bare["t"].data == full["t"].data
