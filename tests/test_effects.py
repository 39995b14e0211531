"""The effects a variant can carry (focal point, flip, blur, sharpen, padding): rendered for
real and checked on the pixels; the same through /t/, imgproxy's and thumbor's URLs; a variant
without them keeps the fingerprint it had before they existed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict
from typing import Any

import pytest
import pyvips

from pixpipe import Recipe, render
from pixpipe.imaging import Output
from pixpipe.recipe import DEFAULT_RECIPE, EFFECTS, RecipeError, Variant, recipe_id

from . import images

BLUE = (30, 30, 220)


def halves() -> bytes:
    """400×200: red left half, blue right half."""
    left = images.solid(200, 200, images.RED)
    return images.png(left.join(images.solid(200, 200, BLUE), "horizontal"))


def one(data: bytes, **spec: Any) -> Output:
    (output,) = render(data, Recipe((Variant(name="t", **spec),))).variants
    return output


def picture(data: bytes, **spec: Any) -> pyvips.Image:
    """The decoded PNG of one variant."""
    return images.decoded(one(data, format="png", **spec).data)


def test_a_variant_without_effects_keeps_its_fingerprint_and_the_recipe_its_id() -> None:
    """Stored variants carry their version: adding effects to the code must not make every
    variant stale (a backfill of everything, every CDN URL new)."""
    for variant in DEFAULT_RECIPE:
        before = {k: v for k, v in asdict(variant).items() if k not in EFFECTS}
        assert variant.settings() == before
    old_style = json.dumps(
        [{k: v for k, v in asdict(x).items() if k not in EFFECTS} for x in DEFAULT_RECIPE],
        sort_keys=True,
    )
    assert recipe_id(DEFAULT_RECIPE) == hashlib.sha256(old_style.encode()).hexdigest()[:16]
    flipped = dataclasses.replace(DEFAULT_RECIPE.variants[0], flip="h")
    assert flipped.fingerprint != DEFAULT_RECIPE.variants[0].fingerprint


def test_flip_mirrors_the_pixels() -> None:
    plain = picture(halves(), width=100, height=50)
    flipped = picture(halves(), width=100, height=50, flip="h")
    assert images.pixel(plain, 5, 25)[2] < 100 < images.pixel(flipped, 5, 25)[2]  # red → blue
    upside = picture(images.jpeg(images.upright_marker()), width=300, height=200, flip="v")
    assert images.pixel(upside, 10, 190)[0] > 180  # the red corner is now bottom-left


def test_padding_adds_background_around_the_variant() -> None:
    out = one(halves(), width=100, height=50, format="png", padding=(10, 20, 30, 40),
              background="#00ff00")  # fmt: skip
    padded = images.decoded(out.data)
    assert (padded.width, padded.height) == (160, 90) == (out.width, out.height)
    assert images.pixel(padded, 2, 2)[:3] == [0, 255, 0]
    assert images.pixel(padded, 45, 30)[0] > 180  # the image itself starts after the padding


def _edge_width(image: pyvips.Image) -> int:
    """How many columns of row 25 sit between red and blue (a hard edge: about 1)."""
    row = [images.pixel(image, x, 25) for x in range(image.width)]
    return sum(1 for r, _, b in (p[:3] for p in row) if 40 < r < 200 and 40 < b < 200)


def test_blur_softens_and_sharpen_hardens_an_edge() -> None:
    plain = picture(halves(), width=200, height=100)
    blurred = picture(halves(), width=200, height=100, blur=4)
    assert _edge_width(blurred) > _edge_width(plain) + 4
    # A soft grey edge (60 | 190): sharpening overshoots on both sides of it, blur never does.
    grey = images.solid(200, 200, (60, 60, 60)).join(images.solid(200, 200, (190,) * 3),
                                                     "horizontal")  # fmt: skip
    soft = images.png(grey.gaussblur(3).cast("uchar"))
    base, sharp = (picture(soft, width=400, height=200, sharpen=s) for s in (0, 1.5))
    spans = [(p.extract_band(0).min(), p.extract_band(0).max()) for p in (base, sharp)]
    assert spans[0][0] >= 58 and spans[0][1] <= 192
    assert spans[1][0] < spans[0][0] - 2 and spans[1][1] > spans[0][1] + 2


def test_a_focal_point_decides_the_cover_crop() -> None:
    """A red mark at the right edge: a centred crop misses it, one around the focal point
    has it."""
    mark = images.solid(60, 60, images.RED)
    wide = images.solid(1000, 200, (128, 128, 128)).insert(mark, 900, 70)
    data = images.png(wide)
    centred = picture(data, width=200, height=200, fit="cover")
    focused = picture(data, width=200, height=200, fit="cover", focus=(0.93, 0.5))
    reds = [sum(1 for x in range(0, 200, 4) if images.pixel(p, x, 100)[0] > 180)
            for p in (centred, focused)]  # fmt: skip
    assert reds[0] == 0 and reds[1] > 0


@pytest.mark.parametrize(("spec", "message"), [
    ({"flip": "x"}, "flip must be one of"),
    ({"blur": -1}, "blur must be a sigma"),
    ({"padding": (1, 2, 3)}, "padding must be"),
    ({"focus": (-0.5, 0.5)}, "focus must be"),
    ({"focus": (0.5,)}, "focus must be"),
])  # fmt: skip
def test_bad_effects_are_refused_when_the_recipe_loads(spec: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        Variant(name="t", width=10, **spec)


def test_recipe_variants_take_effects_from_the_config() -> None:
    recipe = Recipe.parse([{"name": "card", "width": 120, "height": 80, "fit": "cover",
                            "flip": "h", "padding": [4, 4, 4, 4], "blur": 1}])  # fmt: skip
    (output,) = render(halves(), recipe).variants
    assert (output.width, output.height) == (128, 88)
