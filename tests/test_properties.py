"""Property-based tests (hypothesis) for the two grammars at the edge: the key rules
(PRODUCT.md §2, ``stores.validate_key``) and the on-the-fly option grammar (``http/options.py``,
``http/signing.py``). Whatever the input, the answer is the value or the module's own error."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pixpipe.http.options import (
    END,
    MAX_DPR,
    NAMES,
    BadOptions,
    TransformOptions,
    join_path,
    parse_options,
    parse_path,
    to_variant,
)
from pixpipe.http.signing import sign_path, upload_token, verify_path, verify_upload
from pixpipe.recipe import DEFAULT_RECIPE, FITS, FORMATS, GRAVITIES, MAX_SIDE
from pixpipe.storage import MAX_KEY_BYTES, BadKey, validate_key

settings.register_profile("pixpipe", max_examples=120, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
settings.load_profile("pixpipe")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# ---- keys --------------------------------------------------------------------------------

# Segment characters: any text but '/', backslash, control characters and lone surrogates.
segment_chars = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="/\\",
).filter(lambda c: not CONTROL.match(c))  # fmt: skip
segments = (
    st.text(segment_chars, min_size=1, max_size=20)
    .filter(lambda s: s not in (".", ".."))
    .filter(lambda s: not re.search(r"#\d+$", s))
)
good_keys = (
    st.lists(segments, min_size=1, max_size=6)
    .map("/".join)
    .filter(lambda k: len(k.encode()) <= MAX_KEY_BYTES)
)


@given(good_keys)
@example("users/42/IMG 0001.heic")
@example("фото/été/写真 1.jpg")
def test_keys_that_follow_the_rules_are_accepted_unchanged(key: str) -> None:
    assert validate_key(key) == key


@given(st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
@example("")
@example("/a")
@example("a//b")
@example("a/./b")
@example("a/../b")
@example("a\\b")
@example("a\x00b")
@example("\ud800")
def test_any_text_is_a_key_or_a_bad_key(key: str) -> None:
    try:
        validate_key(key)
    except BadKey as exc:
        assert str(exc).startswith("key ")  # the message names the rule
        return
    raw = key.encode("utf-8")
    assert 1 <= len(raw) <= MAX_KEY_BYTES
    assert not key.startswith("/") and "\\" not in key and not CONTROL.search(key)
    assert all(s not in ("", ".", "..") for s in key.split("/"))


breakers = st.sampled_from(["/", "\\", "\x00", "\x1f", "\x7f", "\n"])


@given(good_keys, breakers, st.integers(min_value=0))
def test_one_bad_character_makes_a_good_key_bad(key: str, bad: str, at: int) -> None:
    at %= len(key) + 1
    broken = key[:at] + bad + key[at:]
    if bad == "/":  # a slash only breaks a key at an end or next to another slash
        assume_bad = broken.startswith("/") or broken.endswith("/") or "//" in broken
        if not assume_bad:
            return
    with pytest.raises(BadKey):
        validate_key(broken)


@given(good_keys, st.sampled_from([".", ".."]), st.booleans())
def test_dot_segments_are_refused(key: str, dots: str, before: bool) -> None:
    with pytest.raises(BadKey):
        validate_key(f"{dots}/{key}" if before else f"{key}/{dots}")


@given(st.integers(min_value=MAX_KEY_BYTES + 1, max_value=MAX_KEY_BYTES + 600), st.booleans())
def test_keys_past_1024_bytes_are_refused(size: int, wide: bool) -> None:
    key = ("é" * (size // 2 + 1)) if wide else ("a" * size)
    with pytest.raises(BadKey, match="bytes"):
        validate_key(key)


# ---- transform options -------------------------------------------------------------------

options = st.builds(
    TransformOptions,
    width=st.none() | st.integers(1, MAX_SIDE),
    height=st.none() | st.integers(1, MAX_SIDE),
    fit=st.none() | st.sampled_from(FITS),
    gravity=st.none() | st.sampled_from(GRAVITIES),
    format=st.none() | st.sampled_from((*FORMATS, "auto")),
    quality=st.none() | st.integers(1, 100),
    dpr=st.none() | st.integers(50, int(MAX_DPR * 100)).map(lambda n: n / 100),
    preset=st.none() | st.sampled_from(DEFAULT_RECIPE.names),
)


@given(options)
def test_options_print_and_parse_back(opts: TransformOptions) -> None:
    assert parse_options(opts.path()) == opts


@given(options, good_keys)
@example(TransformOptions(width=10), "w:5/a.jpg")
@example(TransformOptions(), "_/a.jpg")
@example(TransformOptions(), "w:10")
def test_a_signed_path_splits_back_into_options_and_key(opts: TransformOptions, key: str) -> None:
    path = join_path(opts, key)
    assert path.startswith("/")
    assert parse_path(path[1:]) == (opts, key)


@given(st.text(max_size=60))
@example("w:0")
@example("w:16384")
@example("q:101")
@example("dpr:4.01")
@example("w:10/w:20")
@example("fit:crop")
@example("f:bmp")
@example("preset:../x")
@example(f"w:1/{END}")
def test_any_text_is_options_or_bad_options(text: str) -> None:
    try:
        parsed = parse_options(text)
    except BadOptions as exc:
        assert "option" in str(exc)  # the message names the option
        return
    assert parse_options(parsed.path()) == parsed


@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4), st.text(max_size=12))
def test_known_names_with_any_value(names: list[str], value: str) -> None:
    text = "/".join(f"{name}:{value}" for name in names)
    try:
        parsed = parse_options(text)
    except BadOptions as exc:
        assert str(exc).startswith("option")
        return
    assert parse_options(parsed.path()) == parsed


@given(options, st.sampled_from([None, "image/avif,image/webp,*/*", "image/webp", "*/*"]))
def test_options_resolve_to_a_variant_within_limits(opts: TransformOptions, accept: Any) -> None:
    try:
        variant = to_variant(opts, DEFAULT_RECIPE, accept)
    except BadOptions as exc:
        assert str(exc).startswith("option")
        return
    for side in (variant.width, variant.height):
        assert side is None or 1 <= side <= MAX_SIDE
    assert variant.format in FORMATS
    if opts.format == "auto":
        assert variant.format in ("avif", "webp", "jpeg")
    if opts.quality is not None:
        assert variant.quality == opts.quality


# ---- signatures --------------------------------------------------------------------------

secrets_ = st.text(min_size=1, max_size=40)


@given(secrets_, options, good_keys)
def test_signatures_verify_and_are_url_safe(secret: str, opts: TransformOptions, key: str) -> None:
    path = join_path(opts, key)
    signature = sign_path(secret, path)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", signature)
    assert verify_path(secret, signature, path)


@given(secrets_, good_keys, good_keys)
def test_a_signature_fits_one_path_only(secret: str, key: str, other: str) -> None:
    signature = sign_path(secret, f"/w:100/{key}")
    assert verify_path(secret, signature, f"/w:100/{other}") == (key == other)
    assert not verify_path(secret + "x", signature, f"/w:100/{key}")


@given(secrets_, good_keys, st.integers(1, 10**9), st.integers(0, 2**40), st.integers(1, 5))
def test_upload_tokens_bind_every_field(
    secret: str, key: str, length: int, expires: int, bump: int
) -> None:
    token = upload_token(secret, key, "image/jpeg", length, expires)
    assert verify_upload(secret, token, key, "image/jpeg", length, expires)
    assert not verify_upload(secret, token, key, "image/png", length, expires)
    assert not verify_upload(secret, token, key, "image/jpeg", length + bump, expires)
    assert not verify_upload(secret, token, key, "image/jpeg", length, expires + bump)
    assert not verify_upload(secret, token, key + "x", "image/jpeg", length, expires)
