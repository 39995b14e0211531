"""imgproxy's URLs on pixpipe: signatures and option parsing against imgproxy's own published
vectors (cited per table), then real renders through the route."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixpipe.compat import imgproxy
from tests import images
from tests.test_http_harness import Live, live_pixpipe

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("http-imgproxy")]
KEY_HEX, SALT_HEX = "736563726574", "68656C6C6F"  # "secret", "hello": imgproxy's docs example
PHOTO = "ip/photo one.jpg"


# ---- signatures ------------------------------------------------------------------------------

# imgproxy's docs, "Signing the URL" (docs.imgproxy.net/usage/signing_url): key 736563726574,
# salt 68656C6C6F.
DOCS_PATH = ("/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/"
             "anBn.png")  # fmt: skip


def test_the_docs_example_signature() -> None:
    pairs = imgproxy.hex_pairs([KEY_HEX], [SALT_HEX])
    assert imgproxy.sign(*pairs[0], DOCS_PATH) == "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8"
    assert imgproxy.verify(pairs, "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8", DOCS_PATH, 32)


# imgproxy/imgproxy security/signature_test.go: keys "test-key"/"test-key2", salts
# "test-salt"/"test-salt2", path "asd" (VerifySignature signs it as "/asd").
PAIR1, PAIR2 = (b"test-key", b"test-salt"), (b"test-key2", b"test-salt2")


@pytest.mark.parametrize(("pairs", "size", "signature", "valid"), [
    ([PAIR1], 32, "oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20", True),   # TestVerifySignature
    ([PAIR1], 8, "oWaL7QoW5Ts", True),                                   # …Truncated
    ([PAIR1], 32, "oWaL7QoW5Ts", False),                                 # …Invalid
    ([PAIR1, PAIR2], 32, "jYz1UZ7j1BCdSzH3pZhaYf0iuz0vusoOTdqJsUT6WXI", True),  # …MultiplePairs
    ([PAIR1, PAIR2], 32, "oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20", True),
    ([PAIR1, PAIR2], 32, "dtLwhdnPPis", False),
])  # fmt: skip
def test_signature_cases_of_imgproxys_own_tests(
    pairs: list[tuple[bytes, bytes]], size: int, signature: str, valid: bool
) -> None:
    assert imgproxy.verify(pairs, signature, "/asd", size) is valid


# ---- parsing ---------------------------------------------------------------------------------

# imgproxy/imgproxy options/processing_options_test.go (TestParse… cases), as a table.
ORIGIN = "http://images.dev/lorem/ipsum.jpg?param=value"
B64 = base64.urlsafe_b64encode(ORIGIN.encode()).decode().rstrip("=")


@pytest.mark.parametrize(("path", "source", "extension", "options"), [
    (f"/size:100:100/{B64}.png", ORIGIN, "png", {"size": ("100", "100")}),   # Base64URL
    (f"/size:100:100/{B64}", ORIGIN, None, {"size": ("100", "100")}),        # …WithoutExtension
    ("/size:100:100/plain/http://images.dev/lorem/ipsum.jpg@png",
     "http://images.dev/lorem/ipsum.jpg", "png", {"size": ("100", "100")}),  # PlainURL
    ("/size:100:100/plain/http://images.dev/lorem/ipsum.jpg",
     "http://images.dev/lorem/ipsum.jpg", None, {"size": ("100", "100")}),   # …WithoutExtension
    (f"/size:100:100/plain/{quote(ORIGIN, safe='')}@png", ORIGIN, "png",
     {"size": ("100", "100")}),                                              # PlainURLEscaped
    ("/format:webp/plain/http://x/i.jpg", "http://x/i.jpg", None, {"format": ("webp",)}),
    ("/resize:fill:100:200:1/plain/http://x/i.jpg", "http://x/i.jpg", None,
     {"resize": ("fill", "100", "200", "1")}),
    ("/resizing_type:fill/plain/http://x/i.jpg", "http://x/i.jpg", None,
     {"resizing_type": ("fill",)}),
    ("/gravity:soea/plain/http://x/i.jpg", "http://x/i.jpg", None, {"gravity": ("soea",)}),
    ("/quality:55/plain/http://x/i.jpg", "http://x/i.jpg", None, {"quality": ("55",)}),
    ("/background:128:129:130/plain/http://x/i.jpg", "http://x/i.jpg", None,
     {"background": ("128", "129", "130")}),
    ("/dpr:2/plain/http://x/i.jpg", "http://x/i.jpg", None, {"dpr": ("2",)}),
    ("/rs:fit:10:10/w:20/plain/http://x/i.jpg", "http://x/i.jpg", None,  # short names
     {"resize": ("fit", "10", "10"), "width": ("20",)}),
])  # fmt: skip
def test_paths_parse_as_imgproxy_parses_them(
    path: str, source: str, extension: str | None, options: dict[str, tuple[str, ...]]
) -> None:
    parsed = imgproxy.parse(path)
    assert (parsed.source, parsed.extension, parsed.options) == (source, extension, options)


def test_presets_expand_in_place_and_the_default_applies_first() -> None:
    # TestParsePathPreset / TestParsePathPresetDefault
    presets = {"test1": "resizing_type:fill", "test2": "blur:0.2/quality:50",
               "default": "resizing_type:fill/quality:50"}  # fmt: skip
    parsed = imgproxy.parse("/preset:test1:test2/plain/http://x/i.jpg", presets)
    assert parsed.options["resizing_type"] == ("fill",) and parsed.options["quality"] == ("50",)
    assert imgproxy.parse("/quality:70/plain/http://x/i.jpg", presets).options["quality"] == (
        "70",
    )


@pytest.mark.parametrize(("path", "message"), [
    ("/nope:1/plain/http://x/i.jpg", "unknown imgproxy option 'nope'"),
    ("/pr:missing/plain/http://x/i.jpg", "unknown imgproxy preset 'missing'"),
    ("/w:100/plain/http://x/i.jpg@bmp", "unknown output extension 'bmp'"),
    ("/w:100/!!!.png", "neither plain"),
])  # fmt: skip
def test_bad_paths_name_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(imgproxy.BadUrl, match=message.replace("(", r"\(")):
        imgproxy.processing(imgproxy.parse(path))


@pytest.mark.parametrize(("options", "expected"), [
    ("rs:fill:300:200", (300, 200, "cover")),
    ("rs:fit:300:200", (300, 200, "inside")),
    ("rs:force:300:200", (300, 200, "fill")),
    ("s:300:200:0:1", (300, 200, "contain")),
    ("w:300/rt:fill", (300, None, "inside")),  # one side: the aspect ratio is kept
    ("h:120", (None, 120, "inside")),
])  # fmt: skip
def test_resizing_maps_onto_pixpipes_fits(options: str, expected: tuple[object, ...]) -> None:
    wanted = imgproxy.processing(imgproxy.parse(f"/{options}/plain/local:///a.jpg"))
    assert (wanted.width, wanted.height, wanted.fit) == expected


# ---- the route -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings = {"key": KEY_HEX, "salt": SALT_HEX, "keys": ["aa"], "salts": ["bb"]}  # rotation
    with live_pixpipe(tmp_path_factory, imgproxy=settings) as pixpipe:
        pixpipe.processed(PHOTO, images.jpeg(images.photo(1200, 800)))
        yield pixpipe


def signed(path: str) -> str:
    """``/imgproxy/{signature}{path}``, signed with the docs' key and salt."""
    escaped = quote(path, safe="/:@,%")
    (pair,) = imgproxy.hex_pairs([KEY_HEX], [SALT_HEX])
    return f"/imgproxy/{imgproxy.sign(*pair, escaped)}{escaped}"


@pytest.mark.parametrize(("path", "media", "size"), [
    (f"/rs:fill:300:200/plain/local:///{PHOTO}", "image/jpeg", (300, 200)),
    (f"/rs:fit:300:300/plain/local:///{PHOTO}@webp", "image/webp", (300, 200)),
    (f"/w:240/q:60/{base64.urlsafe_b64encode(f'local:///{PHOTO}'.encode()).decode().rstrip('=')}"
     ".png",
     "image/png", (240, 160)),
    (f"/rs:fill:100:100/dpr:2/g:sm/plain/local:///{PHOTO}", "image/jpeg", (200, 200)),
    (f"/rs:fit:200:200/pd:10:20/fl:1:0/bl:1/plain/local:///{PHOTO}@png", "image/png",
     (240, 153)),  # CSS-like padding: 10 top and bottom, 20 left and right
    (f"/rs:fill:100:100/g:fp:0.9:0.5/sh:1/plain/local:///{PHOTO}", "image/jpeg", (100, 100)),
])  # fmt: skip
def test_signed_urls_render_through_pixpipe(
    live: Live, path: str, media: str, size: tuple[int, int]
) -> None:
    response = live.http.get(signed(path))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media
    picture = images.decoded(response.content)
    assert (picture.width, picture.height) == size
    again = live.http.get(signed(path))
    assert again.headers["x-cache"] == "hit" and again.content == response.content


def test_refusals_say_why(live: Live) -> None:
    good = signed(f"/rs:fill:300:200/plain/local:///{PHOTO}")
    tampered = good.replace("300:200", "301:200")
    assert live.http.get(tampered).status_code == 403
    unknown = live.http.get(signed(f"/zoom:2/plain/local:///{PHOTO}"))
    assert unknown.status_code == 400 and "zoom" in unknown.json()["detail"]
    elsewhere = live.http.get(signed("/w:100/plain/https://example.com/a.jpg"))
    assert elsewhere.status_code == 403 and "not allowed" in elsewhere.json()["detail"]
    expired = live.http.get(signed(f"/exp:{int(time.time()) - 10}/w:100/plain/local:///{PHOTO}"))
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]
    missing = live.http.get(signed("/w:100/plain/local:///ip/none.jpg"))
    assert missing.status_code == 404
    later = live.http.get(signed(f"/c:10:10:fp:0.5:0.5/plain/local:///{PHOTO}"))
    assert later.status_code == 400 and "not supported yet" in later.json()["detail"]
    askew = live.http.get(signed(f"/rot:45/plain/local:///{PHOTO}"))
    assert askew.status_code == 400 and "multiple of 90" in askew.json()["detail"]


def test_imgproxys_own_environment_is_honoured_and_pairs_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from pixpipe.config import ImgproxyModel

    monkeypatch.setenv("IMGPROXY_KEY", KEY_HEX)
    monkeypatch.setenv("IMGPROXY_SALT", SALT_HEX)
    assert ImgproxyModel().pairs() == [(b"secret", b"hello")]
    with pytest.raises(ValidationError, match="salts"):
        ImgproxyModel(keys=["aa", "bb"], salts=["cc"])
    with pytest.raises(ValidationError, match="hex"):
        ImgproxyModel(key="not hex", salt="aa")


def test_any_path_is_an_answer_never_a_crash(live: Live) -> None:
    for path in ("/imgproxy/0", "/imgproxy/%C3%97", "/thumbor/x", "/thumbor/unsafe"):
        assert live.http.get(path).status_code in (400, 403), path


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_the_parsers_refuse_with_their_error_only(text: str) -> None:
    from pixpipe.compat import thumbor

    for parser, error in ((imgproxy, imgproxy.BadUrl), (thumbor, thumbor.BadUrl)):
        with contextlib.suppress(error):  # anything else fails the test
            parser.processing(parser.parse(parser.split("/" + text)[1]))  # type: ignore[attr-defined]
