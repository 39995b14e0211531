"""The imaging core as a spec: (input, variant) → size, format, colour; bad input → kind."""

from __future__ import annotations

import pytest

from pixpipe import DEFAULT_RECIPE, Kind, Limits, PixpipeError, Recipe, render, sniff
from pixpipe.imaging import inspect

from . import images

LANDSCAPE, PORTRAIT, SMALL = (1600, 1000), (1000, 1600), (300, 200)


@pytest.fixture(scope="module")
def sources() -> dict[tuple[int, int], bytes]:
    return {size: images.jpeg(images.photo(*size)) for size in (LANDSCAPE, PORTRAIT, SMALL)}


@pytest.mark.parametrize(
    ("spec", "landscape", "portrait", "small"),
    [
        ("v=800x800,inside", (800, 500), (500, 800), (300, 200)),
        ("v=600x600,cover", (600, 600), (600, 600), (200, 200)),
        ("v=640x480,cover,north", (640, 480), (640, 480), (267, 200)),
        ("v=800x800,contain", (800, 800), (800, 800), (800, 800)),
        ("v=640x480,fill", (640, 480), (640, 480), (640, 480)),
        ("v=800x", (800, 500), (800, 1280), (300, 200)),
        ("v=x400", (640, 400), (250, 400), (300, 200)),
        ("v=800x800,inside,enlarge", (800, 500), (500, 800), (800, 533)),
        ("v=600x600,cover,enlarge", (600, 600), (600, 600), (600, 600)),
        ("v=150x150,cover,attention,webp", (150, 150), (150, 150), (150, 150)),
    ],
)
def test_output_size_for_every_fit(sources, spec, landscape, portrait, small):
    recipe = Recipe.parse([spec])
    for size, expected in ((LANDSCAPE, landscape), (PORTRAIT, portrait), (SMALL, small)):
        out = render(sources[size], recipe).variants[0]
        assert (out.width, out.height) == expected, (spec, size)
        assert images.decoded(out.data).width == expected[0]
        assert images.decoded(out.data).height == expected[1]


def test_default_recipe_sizes_and_progressive_jpeg(sources):
    rendered = render(sources[LANDSCAPE], DEFAULT_RECIPE)
    sizes = {o.name: (o.width, o.height) for o in rendered.variants}
    assert sizes == {
        "xl": (1600, 1000), "l": (1280, 800), "m": (800, 500), "s": (400, 250),
        "sq-m": (600, 600), "sq-s": (150, 150),
    }  # fmt: skip
    for output in rendered.variants:
        loaded = images.decoded(output.data)
        assert output.format == "jpeg" and output.data[:3] == b"\xff\xd8\xff"
        assert loaded.get("interlaced") == 1  # progressive
        assert "exif-data" not in loaded.get_fields()


def test_decode_once_matches_decode_each(sources):
    once = render(sources[LANDSCAPE], DEFAULT_RECIPE, strategy="once")
    each = render(sources[LANDSCAPE], DEFAULT_RECIPE, strategy="each")
    for a, b in zip(once.variants, each.variants, strict=True):
        assert (a.name, a.width, a.height) == (b.name, b.width, b.height)
        diff = (images.decoded(a.data) - images.decoded(b.data)).abs().avg()
        assert diff < 3, (a.name, diff)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_comes_out_upright(orientation):
    recipe = Recipe.parse(["v=150x150,inside,png"])
    out = render(images.oriented_jpeg(orientation), recipe).variants[0]
    assert (out.width, out.height) == (150, 100)
    image = images.decoded(out.data)
    top_left, bottom_right = images.pixel(image, 10, 10), images.pixel(image, 140, 90)
    assert top_left[0] > 180 and top_left[1] < 80, f"marker not top-left: {top_left}"
    assert abs(bottom_right[0] - 128) < 20 and abs(bottom_right[1] - 128) < 20


@pytest.mark.parametrize(
    "make",
    [images.cmyk_jpeg, lambda: images.cmyk_jpeg(with_profile=False), images.p3_png, images.png16],
    ids=["cmyk", "cmyk-no-profile", "p3", "16-bit"],
)
def test_colour_managed_to_8bit_srgb(make):
    out = render(make(), Recipe.parse(["v=100x100,inside,png"])).variants[0]
    image = images.decoded(out.data)
    assert (image.bands, image.format, image.interpretation) == (3, "uchar", "srgb")
    r, g, b = images.pixel(image, 50, 40)
    assert abs(r - images.RED[0]) < 25 and g < 70 and b < 70, (r, g, b)


def test_grey_becomes_srgb():
    out = render(images.grey_jpeg(), Recipe.parse(["v=100x100,png"])).variants[0]
    image = images.decoded(out.data)
    assert (image.bands, image.format) == (3, "uchar")


@pytest.mark.parametrize(("background", "expected"), [("white", 255), ("#000000", 0)])
def test_alpha_flattened_onto_background_for_jpeg(background, expected):
    recipe = Recipe.parse([{"name": "v", "width": 200, "height": 200, "background": background}])
    out = render(images.alpha_png(), recipe).variants[0]
    image = images.decoded(out.data)
    assert image.bands == 3
    assert images.pixel(image, 1, 1) == pytest.approx([expected] * 3, abs=3)
    assert images.pixel(image, 100, 75)[0] > 180  # the red disc survives


def test_alpha_kept_for_png_and_webp():
    recipe = Recipe.parse(["p=200x200,png", "w=200x200,webp"])
    for output in render(images.alpha_png(), recipe).variants:
        image = images.decoded(output.data)
        assert image.hasalpha() and images.pixel(image, 1, 1)[3] == 0


def test_animated_gif_to_webp_keeps_frames_and_jpeg_takes_the_first():
    recipe = Recipe.parse(["anim=100x100,webp", "still=100x100,jpeg", "sq=50x50,cover,gif"])
    rendered = render(images.animated_gif(frames=5), recipe)
    anim = images.decoded(rendered["anim"].data, n=-1)
    assert anim.get("n-pages") == 5 and anim.get("page-height") == 50 and anim.width == 100
    still = images.decoded(rendered["still"].data)
    assert (still.width, still.height) == (100, 50)
    square = images.decoded(rendered["sq"].data, n=-1)
    assert square.get("n-pages") == 5 and (square.width, square.get("page-height")) == (50, 50)


def test_pdf_first_page():
    rendered = render(images.pdf(), Recipe.parse(["v=300x300,inside,enlarge"]))
    assert rendered.source.format == "pdf"
    out = rendered.variants[0]
    assert (out.width, out.height) == (200, 300)
    r, _, b = images.pixel(images.decoded(out.data), 100, 150)
    assert r > 180 and b < 80, "first page is red, the second blue"


def test_svg_rendered_at_size():
    rendered = render(images.svg(200, 100), Recipe.parse(["v=400x400,inside,enlarge,png"]))
    out = rendered.variants[0]
    assert (out.width, out.height) == (400, 200)
    assert images.pixel(images.decoded(out.data), 200, 100)[0] > 180


@pytest.mark.parametrize(
    ("fmt", "save"),
    [
        ("png", lambda i: i.pngsave_buffer()),
        ("webp", lambda i: i.webpsave_buffer()),
        ("tiff", lambda i: i.tiffsave_buffer()),
        ("avif", lambda i: i.heifsave_buffer(compression="av1")),
        ("gif", lambda i: i.gifsave_buffer()),
    ],
)
def test_input_formats(fmt, save):
    data = save(images.photo(320, 240))
    assert sniff(data) == fmt
    rendered = render(data, Recipe.parse(["v=160x160,original", "j=100x100"]))
    assert rendered.variants[0].format == ("jpeg" if fmt == "tiff" else fmt)
    assert (rendered.variants[1].width, rendered.variants[1].height) == (100, 75)


def test_heic_from_a_phone_becomes_upright_srgb_jpeg_variants():
    data = images.heic(images.solid(1201, 803))
    assert sniff(data) == "heif"
    source = inspect(data, Limits())
    assert (source.format, source.width, source.height) == ("heif", 1201, 803)
    rendered = render(data, Recipe.parse(["m=600x600", "same=300x300,original"]))
    m, same = rendered.variants
    assert (m.format, m.width, m.height) == ("jpeg", 600, 401)
    assert same.format == "jpeg", "HEIC is not a web format: 'original' falls back to JPEG"
    r, g, b = images.pixel(images.decoded(m.data), 300, 200)
    assert abs(r - images.RED[0]) < 15 and g < 60 and b < 60


def test_heic_with_alpha_keeps_it_in_png():
    data = images.heic(images.decoded(images.alpha_png(400, 300)))
    out = render(data, Recipe.parse(["p=200x200,png"])).variants[0]
    image = images.decoded(out.data)
    assert image.bands == 4 and (out.width, out.height) == (200, 150)


def test_placeholder_and_dominant_colour():
    rendered = render(images.jpeg(images.solid(400, 200)), Recipe.parse(["v=100x100"]))
    import base64

    import fast_thumbhash

    decoded = base64.b64decode(rendered.placeholder)
    assert 5 <= len(decoded) <= 40
    assert fast_thumbhash.thumb_hash_to_approximate_aspect_ratio(decoded) == pytest.approx(2, 0.2)
    r, g, b = (int(rendered.dominant[i : i + 2], 16) for i in (1, 3, 5))
    assert abs(r - images.RED[0]) < 12 and g < 50 and b < 50


HOSTILE = [
    ("empty", lambda: b"", Kind.CORRUPT),
    ("truncated-jpeg", lambda: images.truncated(images.jpeg()), Kind.CORRUPT),
    ("truncated-png", lambda: images.truncated(images.png()), Kind.CORRUPT),
    ("random-bytes", images.random_bytes, Kind.UNSUPPORTED),
    ("text-named-jpg", lambda: b"hello, I am not a photo\n" * 10, Kind.UNSUPPORTED),
    ("png-bomb-60000", images.png_bomb, Kind.TOO_LARGE),
    ("jpeg-claims-65000", images.jpeg_lying, Kind.TOO_LARGE),
    ("svg-xxe", lambda: images.SVG_XXE, Kind.UNSUPPORTED),
    ("svg-billion-laughs", lambda: images.SVG_LAUGHS, Kind.UNSUPPORTED),
    ("svg-external", lambda: images.SVG_EXTERNAL, Kind.UNSUPPORTED),
    ("svg-200000px", lambda: images.svg(200_000, 200_000), Kind.TOO_LARGE),
    ("gif-3000-frames", images.gif_many_frames, Kind.TOO_LARGE),
    ("truncated-heic", lambda: images.truncated(images.heic()), Kind.CORRUPT),
    ("pdf-garbage", lambda: b"%PDF-1.7\n" + images.random_bytes(2000), Kind.CORRUPT),
]


@pytest.mark.parametrize(("make", "kind"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_bad_input_refused_with_its_kind(make, kind):
    with pytest.raises(PixpipeError) as caught:
        render(make(), DEFAULT_RECIPE)
    assert caught.value.kind is kind, caught.value
    assert caught.value.message


def test_limits_come_from_config():
    data = images.jpeg(images.photo(400, 300))
    with pytest.raises(PixpipeError, match="bytes is over") as caught:
        inspect(data, Limits(max_input_bytes=1000))
    assert caught.value.kind is Kind.TOO_LARGE
    with pytest.raises(PixpipeError, match="pixels, over") as caught:
        inspect(data, Limits(max_input_pixels=400 * 300 - 1))
    assert caught.value.kind is Kind.TOO_LARGE
    with pytest.raises(PixpipeError, match="frames is over"):
        inspect(images.animated_gif(frames=6), Limits(max_frames=5))
    assert inspect(data, Limits(max_input_pixels=400 * 300)).pixels == 400 * 300


def test_an_animation_counts_every_frame_against_the_pixel_limit():
    """300 frames of 3000x3000 is a bomb though no frame is: caught from the header alone."""
    gif = images.animated_gif(frames=6, width=200, height=100)  # 6 x 20,000 = 120,000 pixels
    with pytest.raises(PixpipeError, match="6 frames of 200x100 is 120000 pixels") as caught:
        inspect(gif, Limits(max_input_pixels=100_000))
    assert caught.value.kind is Kind.TOO_LARGE
    assert inspect(gif, Limits(max_input_pixels=120_000)).frames == 6
    one_frame = images.png(images.photo(400, 300))  # a still image is counted once
    assert inspect(one_frame, Limits(max_input_pixels=400 * 300)).frames == 1


def test_untrusted_loaders_are_blocked():
    import pyvips

    matrix = b"2 2\n1 2\n3 4\n"  # libvips' text matrix format, not an image we take
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_buffer(matrix, "").avg()
    with pytest.raises(PixpipeError) as caught:
        render(matrix, DEFAULT_RECIPE)
    assert caught.value.kind is Kind.UNSUPPORTED
