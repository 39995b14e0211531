"""Delivery as a CDN origin: strong ETags, 304, ranges, caching headers, content types, the
variant fallback, stores that must never be reachable, and overwritten originals."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests import images
from tests.test_http_harness import Live, live_pixpipe

# One worker per module under xdist: the module shares one live pixpipe.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("http-delivery")]
BLUE = (30, 30, 220)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory) as pixpipe:
        yield pixpipe


@pytest.fixture(scope="module")
def photo(live: Live) -> dict:
    """A processed photo: its state, original bytes and the m variant's URL."""
    data = images.jpeg(images.photo(900, 600))
    state = live.processed("deliver/IMG 0001.jpg", data)
    return {"state": state, "data": data, "m": state["variants"]["m"]["url"]}


def test_variant_headers(live: Live, photo: dict) -> None:
    response = live.http.get(photo["m"])
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert int(response.headers["content-length"]) == len(response.content)
    assert images.decoded(response.content).width == 800


def test_original_headers(live: Live, photo: dict) -> None:
    response = live.http.get(f"/images/original/{quote('deliver/IMG 0001.jpg')}")
    assert response.content == photo["data"]
    assert response.headers["cache-control"] == "public, no-cache"  # may be replaced
    assert response.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("which", ["variant", "original"])
def test_conditional_get_304(live: Live, photo: dict, which: str) -> None:
    url = photo["m"] if which == "variant" else "/images/original/deliver/IMG%200001.jpg"
    etag = live.http.get(url).headers["etag"]
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        response = live.http.get(url, headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b"" and response.headers["etag"] == etag
    assert live.http.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-99", (0, 100)), ("bytes=100-", (100, None)), ("bytes=-50", (-50, None)),
    ("bytes=10-10", (10, 11)), ("bytes=0-999999999", (0, None)),
])  # fmt: skip
def test_ranges_206(live: Live, photo: dict, header: str, expected: tuple) -> None:
    whole = live.http.get(photo["m"]).content
    response = live.http.get(photo["m"], headers={"Range": header})
    assert response.status_code == 206
    start, end = expected
    assert response.content == whole[start:end]
    first = start if start >= 0 else len(whole) + start
    last = first + len(response.content) - 1
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(whole)}"


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=50-10"])
def test_unsatisfiable_range_416(live: Live, photo: dict, header: str) -> None:
    size = len(live.http.get(photo["m"]).content)
    response = live.http.get(photo["m"], headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_odd_range_serves_everything(live: Live, photo: dict) -> None:
    response = live.http.get(photo["m"], headers={"Range": "bytes=0-1,5-6"})
    assert response.status_code == 200


def test_content_type_comes_from_the_bytes(live: Live) -> None:
    """A PNG uploaded under a .jpg name is served as what it is."""
    live.processed("deliver/lying.jpg", images.png(images.photo(200, 100)))
    response = live.http.get("/images/original/deliver/lying.jpg")
    assert response.headers["content-type"] == "image/png"


def test_fallback_to_original_while_a_variant_is_missing(live: Live, photo: dict) -> None:
    # A variant that does not exist (yet): 404, or the original with ?fallback=original.
    url = "/images/later/deliver/IMG%200001.jpg"
    assert live.http.get(url).status_code == 404
    response = live.http.get(url, params={"fallback": "original"})
    assert response.status_code == 200 and response.content == photo["data"]
    assert response.headers["cache-control"] == "no-store"
    # A made variant is served as itself, fallback or not.
    made = live.http.get(photo["m"] + "&fallback=original")  # its versioned URL
    assert made.headers["cache-control"].endswith("immutable")
    assert live.http.get(url, params={"fallback": "nope"}).status_code == 422
    missing = live.http.get("/images/later/none.jpg", params={"fallback": "original"})
    assert missing.status_code == 404


def test_fallback_finds_originals_without_extension(live: Live) -> None:
    data = images.jpeg(images.photo(100, 80))
    live.processed("deliver/noext", data)
    response = live.http.get("/images/later/deliver/noext.jpg", params={"fallback": "original"})
    assert response.content == data and response.headers["content-type"] == "image/jpeg"


def test_backup_quarantine_and_cache_are_never_reachable(live: Live, photo: dict) -> None:
    key = "deliver/broken.jpg"
    assert live.upload(key, images.truncated(images.jpeg())).status_code == 201
    assert live.wait(key)["state"] == "failed"
    for path in (
        "/images/backup/deliver/IMG%200001.jpg", "/images/quarantine/deliver/broken.jpg",
        "/images/original/deliver/broken.jpg", "/images/quarantine/deliver/broken.jpg.error.json",
        "/backup/deliver/IMG%200001.jpg", "/quarantine/deliver/broken.jpg",
        "/images/original/..%2Fbackup%2Fdeliver%2FIMG%200001.jpg",
        "/images/m/..%2F..%2Fbackup%2Fdeliver%2FIMG%200001.jpg",
        "/images/original/%2E%2E/backup/deliver/IMG%200001.jpg",
        "/static/../backup/deliver/IMG%200001.jpg", "/images/cache/x",
    ):  # fmt: skip
        response = live.http.get(path)
        assert response.status_code in (400, 404), (path, response.status_code)


def test_overwritten_original_gets_new_variants(live: Live) -> None:
    key = "deliver/overwrite.jpg"
    first = live.processed(key, images.jpeg(images.solid(400, 300)))
    url = first["variants"]["s"]["url"]
    old = live.http.get(url)
    assert images.pixel(images.decoded(old.content), 10, 10)[0] > 150  # red
    assert old.headers["cache-control"] == "public, max-age=31536000, immutable"
    # The same key, new bytes: the worker sees a new etag and renders again, and the state
    # gives a new versioned URL, so no cache that kept the old one for a year serves it.
    second = live.processed(key, images.jpeg(images.solid(400, 300, BLUE)))
    new_url = second["variants"]["s"]["url"]
    assert new_url != url and new_url.split("?")[0] == url.split("?")[0]
    new = live.http.get(new_url)
    assert new.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert new.headers["etag"] != old.headers["etag"]
    assert images.pixel(images.decoded(new.content), 10, 10)[2] > 150  # blue
    # The plain URL revalidates: a short max-age, then the ETag tells it changed.
    plain = url.split("?")[0]
    assert live.http.get(plain).headers["cache-control"] == "public, max-age=60"
    assert live.http.get(plain, headers={"If-None-Match": old.headers["etag"]}).status_code == 200
    assert live.http.get(plain, headers={"If-None-Match": new.headers["etag"]}).status_code == 304
