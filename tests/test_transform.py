"""On-the-fly transforms over real HTTP: signatures, the option grammar, the cache store (and
its etag keying), f:auto, presets, dpr, hostile sources, the concurrency limit, the fallback
image, and ``pixpipe sign``."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pixpipe.cli import app as cli
from pixpipe.http.hot import Hot, HotCache
from pixpipe.http.signing import transform_path
from tests import images
from tests.test_http_harness import API_KEY, SECRET, Live, live_pixpipe

# One worker per module under xdist: the module shares one live pixpipe.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("http-transform")]
KEY = "tf/photo one.jpg"
FALLBACK = "_fallback.png"
OLD_SECRET = "the-secret-before-rotation"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    api = {"keys": [API_KEY], "signing_secret": SECRET, "transform_fallback": FALLBACK,
           "previous_signing_secrets": [OLD_SECRET]}  # fmt: skip
    with live_pixpipe(tmp_path_factory, api=api) as pixpipe:
        pixpipe.processed(KEY, images.jpeg(images.photo(1200, 800)))
        yield pixpipe


def url(options: str, key: str = KEY) -> str:
    return transform_path(SECRET, options, key)


def test_transform_then_cached(live: Live) -> None:
    path = url("w:300/h:200/fit:cover/g:attention/q:70")
    first = live.http.get(path)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"  # f defaults to the source's format
    assert first.headers["x-cache"] == "miss"
    picture = images.decoded(first.content)
    assert (picture.width, picture.height) == (300, 200)
    second = live.http.get(path)
    assert second.headers["x-cache"] == "hit" and second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert live.http.get(path, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    part = live.http.get(path, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == first.content[:10]
    cached = [p for p in (live.settings.data_dir / "cache").rglob("*.jpg")]
    assert cached, "the result is kept in the cache store"
    metrics = live.http.get("/metrics").text.splitlines()
    hits = next(line for line in metrics if line.startswith("pixpipe_transform_cache_hits_total"))
    assert float(hits.split()[-1]) >= 2


@pytest.mark.parametrize(("options", "size"), [
    ("w:200", (200, 133)), ("h:100", (150, 100)), ("w:200/h:200", (200, 133)),
    ("w:200/h:200/fit:contain", (200, 200)), ("w:200/h:50/fit:fill", (200, 50)),
    ("w:100/dpr:2", (200, 133)), ("w:100/dpr:1.5", (150, 100)), ("preset:sq-s", (150, 150)),
    ("preset:s/w:100", (100, 67)), ("", (1200, 800)), ("w:5000", (1200, 800)),
])  # fmt: skip
def test_sizes(live: Live, options: str, size: tuple[int, int]) -> None:
    response = live.http.get(url(options))
    assert response.status_code == 200, response.text
    picture = images.decoded(response.content)
    assert (picture.width, picture.height) == size


@pytest.mark.parametrize(("accept", "media"), [
    ("image/avif,image/webp,*/*", "image/avif"), ("image/webp,*/*", "image/webp"),
    ("*/*", "image/jpeg"), (None, "image/jpeg"),
])  # fmt: skip
def test_format_auto_from_accept(live: Live, accept: str | None, media: str) -> None:
    headers = {"Accept": accept} if accept else {}
    response = live.http.get(url("w:64/f:auto"), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == media
    assert response.headers["vary"] == "Accept"


@pytest.mark.parametrize("fmt", ["webp", "png", "gif", "avif", "jpeg"])
def test_explicit_formats(live: Live, fmt: str) -> None:
    response = live.http.get(url(f"w:64/f:{fmt}"))
    assert response.headers["content-type"] == f"image/{fmt}"
    assert "vary" not in response.headers


def test_bad_signatures_are_403(live: Live) -> None:
    good = url("w:100")
    sig = good.split("/")[2]
    tampered = [
        good.replace("w:100", "w:101"),  # options changed
        good.replace("photo%20one", "photo%20two"),  # key changed
        good.replace(sig, sig[:-1] + ("A" if sig[-1] != "A" else "B")),  # signature changed
        good.replace(sig, "unsafe"),
        good.replace(sig, ""),
        transform_path("another secret", "w:100", KEY),
    ]
    for path in tampered:
        response = live.http.get(path)
        assert response.status_code in (403, 404), path
        assert response.status_code == 403 or path.startswith("/t//"), path


@pytest.mark.parametrize(("options", "message"), [
    ("w:0", "option w"), ("w:abc", "option w"), ("h:99999", "option h"), ("q:101", "option q"),
    ("fit:crop/w:1/h:1", "option fit"), ("g:middle", "option g"), ("f:bmp", "option f"),
    ("dpr:9", "option dpr"), ("dpr:0", "option dpr"), ("w:1/w:2", "twice"),
    ("fit:cover", "needs w and h"), ("preset:nope", "option preset"),
    ("fit:cover/w:100", "needs both width and height"),
])  # fmt: skip
def test_bad_options_are_400(live: Live, options: str, message: str) -> None:
    response = live.http.get(url(options))
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


def test_bad_key_is_400(live: Live) -> None:
    for key in ("a\\b.jpg", "a/\tb.jpg", "a/b#1"):
        response = live.http.get(url("w:100", key))
        assert response.status_code == 400, key
        assert "key" in response.json()["detail"]


def test_missing_source_serves_the_fallback_image_as_404(live: Live) -> None:
    path = url("w:50", "tf/nowhere.jpg")
    assert live.http.get(path).status_code == 404  # no fallback image stored yet
    assert live.upload(FALLBACK, images.png(images.solid(100, 100))).status_code == 201
    response = live.http.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    assert images.decoded(response.content).width == 50


def _hidden(live: Live, key: str, data: bytes) -> None:
    """Put bytes in the originals folder without an announcement (the folder watcher skips
    dot-folders), as if they arrived behind the pipeline's back."""
    path = live.settings.data_dir / "originals" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize(("data", "kind"), [
    (images.png_bomb(), "too_large"), (images.jpeg_lying(), "too_large"),
    (images.truncated(images.jpeg()), "corrupt"), (images.random_bytes(), "unsupported"),
])  # fmt: skip
def test_hostile_sources_are_422_never_a_crash(live: Live, data: bytes, kind: str) -> None:
    key = f".hostile/{kind}-{len(data)}.png"
    _hidden(live, key, data)
    response = live.http.get(url("w:100", key))
    assert response.status_code == 422, response.text
    assert response.json()["kind"] == kind
    assert live.http.get(url("w:100")).status_code == 200  # and the service carries on


def test_overwritten_original_never_serves_a_stale_result(live: Live) -> None:
    key = "tf/overwrite.png"
    live.processed(key, images.png(images.solid(300, 200)))
    path = url("w:30/f:png", key)
    red = live.http.get(path)
    assert images.pixel(images.decoded(red.content), 5, 5)[0] > 150
    assert live.http.get(path).headers["x-cache"] == "hit"
    live.processed(key, images.png(images.solid(300, 200, (30, 30, 220))))
    blue = live.http.get(path)
    assert blue.headers["x-cache"] == "miss"
    assert blue.headers["etag"] != red.headers["etag"]
    assert images.pixel(images.decoded(blue.content), 5, 5)[2] > 150


def test_saturated_transforms_answer_503_with_retry_after(live: Live) -> None:
    key = "tf/big.jpg"
    live.processed(key, images.jpeg(images.photo(3000, 2000)))
    paths = [url(f"w:{500 + i}/h:{400 + i}/fit:cover/g:entropy", key) for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(live.http.get, paths))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    # Slots free again once the renders finish.
    assert live.http.get(paths[0]).status_code == 200


def test_cli_sign_makes_working_urls(live: Live, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXPIPE_API__SIGNING_SECRET", SECRET)
    result = CliRunner().invoke(cli, ["sign", "w:120/f:webp", KEY, "--base", live.url])
    assert result.exit_code == 0, result.output
    response = live.http.get(result.output.strip())
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    bad = CliRunner().invoke(cli, ["sign", "w:-1", KEY])
    assert bad.exit_code == 2 and "option w" in bad.output


def test_results_in_memory_are_bounded_least_recently_used_out() -> None:
    hot = HotCache(max_bytes=10, max_item=6)
    for name in "abc":
        hot.put(name, Hot(name.encode() * 3, "image/png", name))
    assert len(hot) == 3 and hot.size == 9
    assert hot.get("a") is not None  # a is now the most recently used
    hot.put("d", Hot(b"dddd", "image/png", "d"))
    assert hot.get("b") is None and hot.get("a") is not None and hot.size <= 10
    hot.put("big", Hot(b"x" * 7, "image/png", "big"))  # over max_item: stays in the store only
    assert hot.get("big") is None
    hot.put("a", Hot(b"A", "image/png", "a2"))  # replaced, size accounted
    assert hot.get("a") == Hot(b"A", "image/png", "a2") and hot.size == 1 + 3 + 4  # a, c, d


def test_an_original_over_the_byte_limit_is_refused_from_its_size(live: Live) -> None:
    """Transforms and invoke look at the original's size (a HEAD) before fetching it: one
    over ``max_input_bytes`` (here dropped straight into the folder) is ``too_large``."""
    from tests.test_http_harness import AUTH, MAX_BYTES

    key = "tf/too big.jpg"
    data = images.jpeg(images.photo(64, 64))
    (live.settings.data_dir / "originals" / key).write_bytes(data + b"\0" * (MAX_BYTES + 1))
    transformed = live.http.get(url("w:100", key))
    assert transformed.status_code == 422 and transformed.json()["kind"] == "too_large"
    assert str(MAX_BYTES) in transformed.json()["detail"]
    invoked = live.http.post("/v1/invoke", json={"key": key, "maxDimension": 100}, headers=AUTH)
    assert invoked.status_code == 422 and invoked.json()["kind"] == "too_large"
    assert live.wait(key)["error"]["kind"] == "too_large"  # and the pipeline's worker agrees


def test_urls_expire_inside_their_signature(live: Live) -> None:
    """``exp:{unix time}`` is signed with the rest: moving it breaks the signature, and past
    it the URL is a 403 that says so (in memory or not)."""
    import time

    soon = int(time.time()) + 2
    fresh = url(f"w:120/exp:{soon}")
    assert live.http.get(fresh).status_code == 200
    assert live.http.get(fresh).headers["x-cache"] == "hit"  # answered from memory
    moved = fresh.replace(f"exp:{soon}", f"exp:{soon + 3600}")
    assert live.http.get(moved).status_code == 403
    time.sleep(max(0.0, soon - time.time()) + 1.1)
    expired = live.http.get(fresh)
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]
    past = live.http.get(url("w:120/exp:1"))
    assert past.status_code == 403 and "exp:1" in past.json()["detail"]
    assert live.http.get(url("w:120/exp:soon")).status_code == 400


def test_urls_signed_with_a_previous_secret_still_verify(live: Live) -> None:
    old = transform_path(OLD_SECRET, "w:100", KEY)
    assert live.http.get(old).status_code == 200
    stranger = transform_path("never-configured", "w:100", KEY)
    assert live.http.get(stranger).status_code == 403


def test_pixpipe_sign_adds_an_expiry(live: Live, tmp_path: Path) -> None:
    import re
    import time

    runner = CliRunner(env={"PIXPIPE_API__SIGNING_SECRET": SECRET})
    result = runner.invoke(cli, ["sign", "w:90", KEY, "--expires-in", "600",
                                 "--data-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    path = result.output.strip()
    exp = int(re.search(r"exp:(\d+)", path).group(1))  # type: ignore[union-attr]
    assert 590 <= exp - time.time() <= 600
    assert live.http.get(path).status_code == 200


def test_effects_in_the_transform_grammar(live: Live) -> None:
    plain = images.decoded(live.http.get(url("w:200/f:png")).content)
    padded = images.decoded(live.http.get(url("w:200/f:png/pad:10,20,10,20")).content)
    assert (padded.width, padded.height) == (plain.width + 40, plain.height + 20)
    flipped = images.decoded(live.http.get(url("w:200/f:png/flip:h")).content)
    assert (flipped - plain.fliphor()).abs().max() == 0
    assert (flipped - plain).abs().avg() > 5
    blurred = images.decoded(live.http.get(url("w:200/f:png/blur:3")).content)
    assert (blurred - plain).abs().avg() > 0
    focused = live.http.get(url("w:100/h:100/fit:cover/fp:1,0.5/f:png"))
    assert focused.status_code == 200
    assert live.http.get(url("w:100/flip:sideways")).status_code == 400


def test_client_hints_choose_the_size_where_the_url_says_auto(live: Live) -> None:
    hinted = live.http.get(url("w:auto/f:png"), headers={"Sec-CH-Width": "333"})
    assert hinted.status_code == 200
    assert images.decoded(hinted.content).width == 333
    assert "Sec-CH-Width" in hinted.headers["vary"]
    assert "Sec-CH-DPR" in hinted.headers["accept-ch"]
    doubled = live.http.get(url("w:100/dpr:auto/f:png"), headers={"Sec-CH-DPR": "2"})
    assert images.decoded(doubled.content).width == 200
    unhinted = live.http.get(url("w:100/dpr:auto/f:png"))
    assert images.decoded(unhinted.content).width == 100
    plain = live.http.get(url("w:100/f:png"))
    assert "vary" not in plain.headers  # a fixed URL does not depend on the hints


def test_srcset_from_the_recipes_variants_and_from_transform_widths(live: Live) -> None:
    got = live.http.get(f"/v1/images/{KEY}/srcset", params={"sizes": "50vw"}).json()
    entries = [e.rsplit(" ", 1) for e in got["srcset"].split(", ")]
    widths = [int(w.removesuffix("w")) for _, w in entries]
    assert widths == sorted(widths) and len(widths) >= 2 and got["sizes"] == "50vw"
    for link, width in zip((u for u, _ in entries), widths, strict=True):
        assert "?v=" in link  # the versioned, immutable URLs
        served = live.http.get(link.removeprefix(live.url))
        assert images.decoded(served.content).width == width
    assert got["src"] in got["srcset"]
    made = live.http.get(f"/v1/images/{KEY}/srcset",
                         params={"widths": "640,320", "options": "f:webp"}).json()  # fmt: skip
    links = [e.rsplit(" ", 1) for e in made["srcset"].split(", ")]
    assert [w for _, w in links] == ["320w", "640w"]
    for link, width in links:
        served = live.http.get(link.removeprefix(live.url))
        assert served.headers["content-type"] == "image/webp"
        assert images.decoded(served.content).width == int(width.removesuffix("w"))
    assert live.http.get(f"/v1/images/{KEY}/srcset", params={"widths": "a,b"}).status_code == 400
    assert live.http.get("/v1/images/tf/none.jpg/srcset").status_code == 404
