"""thumbor's URLs on pixpipe: signatures and paths against libthumbor's own published cases
(cited per table), then real renders through the route."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from pixpipe.compat import thumbor
from tests import images
from tests.test_http_harness import Live, live_pixpipe

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("http-thumbor")]
KEY = "my-security-key"  # libthumbor's tests' key
PHOTO = "th/photo one.jpg"


# thumbor/libthumbor tests/test_libthumbor.py and the thumbor docs ("Security"): key
# my-security-key, "300x200/my.server.com/some/path/to/image.jpg".
def test_libthumbors_signature_case() -> None:
    path = "300x200/my.server.com/some/path/to/image.jpg"
    assert thumbor.sign(KEY, path) == "8ammJH8D-7tXy6kU3lTvoXlhu4o="
    assert thumbor.verify(KEY, "8ammJH8D-7tXy6kU3lTvoXlhu4o=", path)
    assert not thumbor.verify(KEY, "8ammJH8D-7tXy6kU3lTvoXlhu4o=", "301x200/" + path[8:])


def test_libthumbors_signer_case() -> None:
    # thumbor/libthumbor tests/url_signers/test_base64_hmac_sha1_signer.py::test_can_sign_url
    url = "10x11:12x13/-300x-300/center/middle/smart/some/image.jpg"
    expected = base64.urlsafe_b64encode(hmac.new(b"something", url.encode(), hashlib.sha1).digest())
    assert thumbor.sign("something", url) == expected.decode()


IMG = "84996242f65a4d864aceb125e1c4c5ba"  # libthumbor's test image path (its URL's MD5)


# thumbor/libthumbor tests/test_url_composer.py: each composed path, read back.
@pytest.mark.parametrize(("path", "parts"), [
    (f"300x0/{IMG}", {"width": 300, "height": None}),                     # width_height_1
    (f"0x300/{IMG}", {"width": None, "height": 300}),                     # width_height_2
    (f"200x300/{IMG}", {"width": 200, "height": 300}),                    # width_height_3
    (f"origx0/{IMG}", {"width": None, "height": None}),                   # width_height_4
    (f"100xorig/{IMG}", {"width": 100, "height": None}),                  # width_height_6
    (f"200x300/smart/{IMG}", {"smart": True}),                             # smart_url
    (f"fit-in/200x300/{IMG}", {"fit": "fit-in"}),                          # fit_in_url
    (f"adaptive-fit-in/200x300/{IMG}", {"fit": "adaptive-fit-in"}),       # adaptive_fit_in_url
    (f"full-fit-in/200x300/{IMG}", {"fit": "full-fit-in"}),               # full_fit_in_url
    (f"-200x-300/{IMG}", {"flip": "hv", "width": 200, "height": 300}),    # flip_flop2
    (f"-0x0/{IMG}", {"flip": "h", "width": None}),                         # flip_1
    (f"left/{IMG}", {"halign": "left"}),                                   # horizontal_alignment
    (f"top/{IMG}", {"valign": "top"}),                                     # vertical_alignment
    (f"left/top/{IMG}", {"halign": "left", "valign": "top"}),              # both_alignments
    (f"meta/{IMG}", {"meta": True}),                                       # proper_meta
    (f"trim/{IMG}", {"trim": ""}),                                         # trim_standard
    (f"trim:bottom-right:15/{IMG}", {"trim": ":bottom-right:15"}),         # trim_pixel_and_…
    (f"10x20:30x40/{IMG}", {"crop": (10, 20, 30, 40)}),                    # manual_crop_1
    (f"left/smart/{IMG}", {"halign": "left", "smart": True}),              # smart_after_align…
    (f"300x200/filters:quality(20):format(webp)/{IMG}",
     {"filters": {"quality": "20", "format": "webp"}}),
])  # fmt: skip
def test_libthumbors_composed_paths_parse_back(path: str, parts: dict[str, object]) -> None:
    parsed = thumbor.parse(path)
    assert parsed.image == IMG
    assert {name: getattr(parsed, name) for name in parts} == parts


@pytest.mark.parametrize(("path", "message"), [
    (f"300x200/filters:zoom(2)/{IMG}", "unknown thumbor filter 'zoom'"),
    (f"300x200/filters:rotate(ninety)/{IMG}", "rotate(ninety): a whole number"),
    (f"30x20:10x40/{IMG}", "has no area"),
    (f"300x200/filters:brightness(101)/{IMG}", "-100 to 100"),
    (f"300x200/filters:watermark(a.png,0,0)/{IMG}", "image, x, y, alpha"),
    (f"meta/{IMG}", "not served by pixpipe"),
    (f"300x200/filters:blur(500)/{IMG}", "0 to 100"),
    (f"300x200/filters:quality(500)/{IMG}", "1 to 100"),
    (f"300x200/filters:fill(chartreuse-ish)/{IMG}", "colour"),
])  # fmt: skip
def test_bad_paths_name_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(thumbor.BadUrl, match=re.escape(message)):
        thumbor.processing(thumbor.parse(path))


@pytest.mark.parametrize(("options", "expected"), [
    ("300x200", (300, 200, "cover", "centre")),
    ("fit-in/300x200", (300, 200, "inside", "centre")),
    ("300x200/left/top", (300, 200, "cover", "northwest")),
    ("300x200/smart", (300, 200, "cover", "face")),  # faces first, as thumbor's detectors
    ("300x0", (300, None, "inside", "centre")),
    ("adaptive-fit-in/300x200", (300, 200, "inside", "centre", True)),
    ("full-fit-in/300x200", (300, 200, "outside", "centre")),
    ("adaptive-full-fit-in/300x200", (300, 200, "outside", "centre", True)),
])  # fmt: skip
def test_thumbors_fits_map_onto_pixpipes(options: str, expected: tuple[object, ...]) -> None:
    wanted = thumbor.processing(thumbor.parse(f"{options}/a.jpg"))
    got = (wanted.width, wanted.height, wanted.fit, wanted.gravity)
    assert got + ((True,) if wanted.adapt else ()) == expected
    assert wanted.enlarge  # thumbor enlarges unless no_upscale()


# ---- the route -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory, thumbor={"security_key": KEY}) as pixpipe:
        pixpipe.processed(PHOTO, images.jpeg(images.photo(1200, 800)))
        yield pixpipe


def signed(path: str) -> str:
    escaped = quote(path, safe="/:(),")
    return f"/thumbor/{thumbor.sign(KEY, escaped)}/{escaped}"


@pytest.mark.parametrize(("path", "media", "size"), [
    (f"300x200/{PHOTO}", "image/jpeg", (300, 200)),
    (f"fit-in/300x300/{PHOTO}", "image/jpeg", (300, 200)),
    (f"300x300/smart/filters:format(webp):quality(70)/{PHOTO}", "image/webp", (300, 300)),
    (f"2400x0/{PHOTO}", "image/jpeg", (2400, 1600)),  # thumbor enlarges…
    (f"2400x0/filters:no_upscale()/{PHOTO}", "image/jpeg", (1200, 800)),  # … unless told not to
    (f"-300x200/filters:blur(2):sharpen(1,1,true):format(png)/{PHOTO}", "image/png", (300, 200)),
])  # fmt: skip
def test_signed_urls_render_through_pixpipe(
    live: Live, path: str, media: str, size: tuple[int, int]
) -> None:
    response = live.http.get(signed(path))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media
    picture = images.decoded(response.content)
    assert (picture.width, picture.height) == size


def test_refusals_say_why(live: Live) -> None:
    tampered = signed(f"300x200/{PHOTO}").replace("300x200", "301x200")
    assert live.http.get(tampered).status_code == 403
    unsafe = live.http.get(f"/thumbor/unsafe/300x200/{quote(PHOTO)}")
    assert unsafe.status_code == 403 and "allow_unsafe" in unsafe.json()["detail"]
    unknown = live.http.get(signed(f"300x200/filters:zoom(2)/{PHOTO}"))
    assert unknown.status_code == 400 and "zoom" in unknown.json()["detail"]
    meta = live.http.get(signed(f"meta/300x200/{PHOTO}"))
    assert meta.status_code == 400 and "meta" in meta.json()["detail"]
    assert live.http.get(signed("300x200/th/none.jpg")).status_code == 404


def test_a_negative_width_mirrors_as_thumbor_does(live: Live) -> None:
    plain = images.decoded(live.http.get(signed(f"300x200/filters:format(png)/{PHOTO}")).content)
    mirrored = images.decoded(
        live.http.get(signed(f"-300x200/filters:format(png)/{PHOTO}")).content
    )
    assert (mirrored - plain.fliphor()).abs().max() == 0
