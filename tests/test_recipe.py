"""Recipe and config: specs parse to frozen variants; every error points at the bad part."""

from __future__ import annotations

import dataclasses

import pytest

from pixpipe import DEFAULT_RECIPE, Recipe, RecipeError, Variant, load_settings, parse_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("m=800x", Variant("m", 800, None)),
        ("h=x600", Variant("h", None, 600)),
        (
            "thumb=160x160,cover,attention,webp,q75",
            Variant("thumb", 160, 160, "cover", "attention", "webp", 75),
        ),
        ("t=10x20,q90,png,fill", Variant("t", 10, 20, "fill", format="png", quality=90)),
        ("t=10x20,cover,center,jpg", Variant("t", 10, 20, "cover", "centre", "jpeg")),
        ("t=10x20,cover,north-east", Variant("t", 10, 20, "cover", "northeast")),
        ("l=100x100,webp,lossless", Variant("l", 100, 100, format="webp", lossless=True)),
    ],
)
def test_spec_syntax(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("thumb=160x160,crop", "variant \"thumb\": unknown option 'crop'"),
        ("thumb=160", "variant \"thumb\": size must look like 800x600"),
        ("thumb=x", 'variant "thumb": give a width, a height or both'),
        ("thumb=160x,cover", 'variant "thumb": fit cover needs both width and height'),
        ("thumb=160x160,q0", 'variant "thumb": quality must be from 1 to 100 (got 0)'),
        ("thumb=99999x1", 'variant "thumb": width must be a whole number from 1 to 16383'),
        ("thumb=1x1,webp,png", 'variant "thumb": format given twice'),
        ("no size", "expected NAME=WxH"),
        ("bad/name=10x10", "variant name must be"),
    ],
)
def test_bad_specs_point_at_the_bad_part(spec, message):
    with pytest.raises(RecipeError) as caught:
        parse_spec(spec)
    assert message in str(caught.value)


def test_mapping_errors_name_the_key_and_value():
    with pytest.raises(RecipeError, match=r'variant "thumb": fit must be one of inside, cover, '
                       r'contain, fill, outside, auto \(got \'crop\'\)'):  # fmt: skip
        Recipe.parse([{"name": "thumb", "width": 10, "height": 10, "fit": "crop"}])
    with pytest.raises(RecipeError, match='variant "x": unknown key'):
        Recipe.parse([{"name": "x", "width": 10, "colour": "red"}])
    with pytest.raises(RecipeError, match="background must be"):
        Recipe.parse([{"name": "x", "width": 10, "background": "nope"}])
    with pytest.raises(RecipeError, match="unique"):
        Recipe.parse(["a=1x1", "a=2x2"])


def test_default_recipe_is_the_six_variations():
    assert DEFAULT_RECIPE.names == ("xl", "l", "m", "s", "sq-m", "sq-s")
    assert all(v.format == "jpeg" and v.quality == 80 and v.progressive for v in DEFAULT_RECIPE)
    assert [v.fit for v in DEFAULT_RECIPE][-2:] == ["cover", "cover"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_RECIPE.variants[0].width = 1  # type: ignore[misc]


def test_variant_keys_follow_the_layout():
    m = parse_spec("m=800x800")
    assert m.key_for("users/42/IMG 0001.heic") == "m/users/42/IMG 0001.jpg"
    assert m.key_for("noext") == "m/noext.jpg"
    assert m.key_for("a.b/c.d.png") == "m/a.b/c.d.jpg"
    keep = parse_spec("o=100x,original")
    assert keep.key_for("x/y.png", "png") == "o/x/y.png"
    assert keep.key_for("x/y.tif", "tiff") == "o/x/y.jpg"


def test_toml_variants_replace_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pixpipe.toml").write_text(
        'data_dir = "./d"\n[limits]\nmax_frames = 7\n'
        '[[variants]]\nname = "thumb"\nwidth = 160\nheight = 160\nfit = "cover"\n'
        'format = "webp"\nquality = 75\n'
    )
    settings = load_settings()
    assert settings.recipe.names == ("thumb",)
    assert settings.recipe.variants[0] == parse_spec("thumb=160x160,cover,webp,q75")
    assert settings.limits.frozen().max_frames == 7
    monkeypatch.setenv("PIXPIPE_LIMITS__MAX_FRAMES", "9")
    monkeypatch.setenv("PIXPIPE_STORES__ORIGINALS", "s3://uploads")
    monkeypatch.setenv("PIXPIPE_API__KEYS", "k1,k2")
    settings = load_settings()
    assert settings.limits.max_frames == 9, "the environment beats the file"
    assert settings.store_url("originals") == "s3://uploads"
    assert settings.store_url("variants") == f"file://{tmp_path / 'd' / 'variants'}"
    assert settings.api.keys == ["k1", "k2"]


def test_bad_toml_variant_is_reported(tmp_path):
    config = tmp_path / "x.toml"
    config.write_text('[[variants]]\nname = "t"\nwidth = 10\nfit = "crop"\n')
    with pytest.raises(RecipeError, match='variant "t": fit must be one of'):
        load_settings(config)
