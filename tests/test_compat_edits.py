"""The edits through every URL grammar, rendered by a real pixpipe: pixpipe's own /t/,
imgproxy's and thumbor's URLs ask for the same trim, crop, rotation, fits, tone, watermark and
max_bytes, and get the same pixels from the one renderer (tests/test_edits.py checks the pixels
of each edit on its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import pyvips

from pixpipe.compat import imgproxy, thumbor
from pixpipe.http.signing import transform_path
from tests import images
from tests.test_http_harness import API_KEY, SECRET, Live, live_pixpipe

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("http-compat-edits")]
KEY_HEX, SALT_HEX = "736563726574", "68656C6C6F"
THUMBOR_KEY = "my-security-key"
FRAMED = "ed/framed.png"  # a 200×100 blue box in a 50 px white border
PHOTO = "ed/photo.jpg"  # 1200×800
LOGO = "ed/logo.png"  # 40×20 red
FACE = "ed/astronaut.jpg"  # tests/fixtures/astronaut.jpg
FIXTURES = Path(__file__).parent / "fixtures"
BLUE = (30, 30, 220)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    api = {"keys": [API_KEY], "signing_secret": SECRET, "watermark": LOGO}
    with live_pixpipe(
        tmp_path_factory, api=api, imgproxy={"key": KEY_HEX, "salt": SALT_HEX},
        thumbor={"security_key": THUMBOR_KEY},
    ) as pixpipe:  # fmt: skip
        white = images.solid(300, 200, (255, 255, 255))
        canvas = white.insert(images.solid(200, 100, BLUE), 50, 50)
        pixpipe.processed(FRAMED, images.png(canvas))
        pixpipe.processed(PHOTO, images.jpeg(images.photo(1200, 800)))
        pixpipe.processed(LOGO, images.png(images.solid(40, 20, images.RED)))
        pixpipe.processed(FACE, (FIXTURES / "astronaut.jpg").read_bytes())
        yield pixpipe


def own(options: str, key: str) -> str:
    return transform_path(SECRET, options, key)


def via_imgproxy(options: str, key: str) -> str:
    path = quote(f"/{options}/plain/local:///{key}", safe="/:@,%")
    (pair,) = imgproxy.hex_pairs([KEY_HEX], [SALT_HEX])
    return f"/imgproxy/{imgproxy.sign(*pair, path)}{path}"


def via_thumbor(options: str, key: str) -> str:
    path = quote(f"{options}/{key}", safe="/:(),")
    return f"/thumbor/{thumbor.sign(THUMBOR_KEY, path)}/{path}"


def fetched(live: Live, url: str) -> pyvips.Image:
    response = live.http.get(url)
    assert response.status_code == 200, response.text
    return images.decoded(response.content)


# The same request in each grammar: the same size and the same pixels.
SAME = [
    pytest.param(own("trim:10/f:png", FRAMED), via_imgproxy("t:10/f:png", FRAMED),
                 via_thumbor("trim:10/filters:format(png)", FRAMED), (200, 100), id="trim"),
    pytest.param(own("crop:600,400,northwest/w:300/f:png", PHOTO),
                 via_imgproxy("c:600:400:nowe/w:300/f:png", PHOTO),
                 via_thumbor("0x0:600x400/300x0/filters:format(png)", PHOTO), (300, 200),
                 id="crop"),
    pytest.param(own("crop:600,400,northwest,300,200/w:300/f:png", PHOTO),
                 via_imgproxy("c:600:400:nowe:300:200/w:300/f:png", PHOTO),
                 via_thumbor("300x200:900x600/300x0/filters:format(png)", PHOTO), (300, 200),
                 id="crop-offset"),
    pytest.param(own("w:200/h:300/fit:cover/rot:90/f:png", PHOTO),
                 via_imgproxy("rs:fill:200:300/rot:90/f:png", PHOTO),
                 via_thumbor("300x200/filters:rotate(270):format(png)", PHOTO), (200, 300),
                 id="rotate"),
    pytest.param(own("w:300/h:300/fit:contain/g:north/f:png", PHOTO),
                 via_imgproxy("rs:fit:300:300/ex:1:no/f:png", PHOTO), None, (300, 300),
                 id="extend-north"),
    pytest.param(own("w:300/h:300/fit:outside/f:png", PHOTO), None,
                 via_thumbor("full-fit-in/300x300/filters:format(png)", PHOTO), (450, 300),
                 id="outside"),
    pytest.param(own("w:200/h:300/adapt:1/f:png", PHOTO), None,
                 via_thumbor("adaptive-fit-in/200x300/filters:format(png)", PHOTO), (300, 200),
                 id="adaptive"),
    pytest.param(own("w:300/brightness:20/contrast:10/grayscale:1/f:png", PHOTO), None,
                 via_thumbor("300x0/filters:brightness(20):contrast(10):grayscale():format(png)",
                             PHOTO), (300, 200), id="tone"),
    pytest.param(own("w:512/h:150/fit:cover/g:face/f:png", FACE),
                 via_imgproxy("rs:fill:512:150/g:obj:face/f:png", FACE),
                 via_thumbor("512x150/smart/filters:format(png)", FACE), (512, 150), id="face"),
    pytest.param(own("w:300/wm:0.5,northwest,10,10/f:png", PHOTO),
                 via_imgproxy("w:300/wm:0.5:nowe:10:10/f:png", PHOTO),
                 via_thumbor(f"300x0/filters:watermark({LOGO},10,10,50):format(png)", PHOTO),
                 (300, 200), id="watermark"),
]


@pytest.mark.parametrize(("ours", "imgproxys", "thumbors", "size"), SAME)
def test_every_grammar_gets_the_same_image(
    live: Live, ours: str, imgproxys: str | None, thumbors: str | None, size: tuple[int, int]
) -> None:
    mine = fetched(live, ours)
    assert (mine.width, mine.height) == size
    for url in (imgproxys, thumbors):  # None: that grammar has no such option
        if url is not None:
            theirs = fetched(live, url)
            assert (theirs.width, theirs.height) == size
            assert (theirs - mine).abs().max() == 0, url


def test_trim_crop_and_rotation_show_in_the_pixels(live: Live) -> None:
    trimmed = fetched(live, own("trim:10/f:png", FRAMED))
    assert images.pixel(trimmed, 0, 0)[:3] == list(BLUE)  # the white border is gone
    marked = fetched(live, own("w:300/wm:1,northwest,10,10/f:png", PHOTO))
    assert images.pixel(marked, 15, 15)[:3] == list(images.RED)
    plain = fetched(live, own("w:300/f:png", PHOTO))
    assert images.pixel(plain, 15, 15)[:3] != list(images.RED)
    turned = fetched(live, own("w:800/rot:180/f:png", PHOTO))
    assert (turned - plain.resize(800 / 300).rot180()).abs().avg() < 30  # roughly the same


def test_a_new_watermark_makes_new_results(live: Live) -> None:
    """The logo's version is in the cache key: replacing it never serves the old mark."""
    url = own("w:300/wm:1,northwest/f:png", FRAMED)
    assert images.pixel(fetched(live, url), 2, 2)[:3] == list(images.RED)
    live.processed(LOGO, images.png(images.solid(40, 20, (0, 200, 0))))
    assert images.pixel(fetched(live, url), 2, 2)[:3] == [0, 200, 0]
    live.processed(LOGO, images.png(images.solid(40, 20, images.RED)))


def test_max_bytes_through_the_routes(live: Live) -> None:
    free = live.http.get(own("w:800/q:95/f:jpeg", PHOTO))
    limit = len(free.content) // 3
    for url in (own(f"w:800/q:95/f:jpeg/maxbytes:{limit}", PHOTO),
                via_thumbor(f"800x0/filters:quality(95):max_bytes({limit})", PHOTO)):  # fmt: skip
        response = live.http.get(url)
        assert response.status_code == 200, response.text
        assert len(response.content) <= limit


@pytest.mark.parametrize(("url", "status", "words"), [
    (own("crop:abc/w:10", PHOTO), 400, "option crop must be"),
    (own("rot:45/w:10", PHOTO), 400, "option rot must be"),
    (own("wm:2/w:10", PHOTO), 400, "option wm must be"),
    (via_thumbor("300x0/filters:watermark(ed/none.png,0,0,0)", PHOTO), 404, "no watermark"),
    (via_imgproxy("rot:45/w:10", PHOTO), 400, "multiple of 90"),
])  # fmt: skip
def test_bad_edits_are_refused_with_the_reason(
    live: Live, url: str, status: int, words: str
) -> None:
    response = live.http.get(url)
    assert response.status_code == status and words in response.json()["detail"]


def test_recipe_variants_carry_edits_and_a_watermark_file_through_the_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The worker's render processes get the recipe's watermark with the recipe: the variant
    is cropped, turned and marked as its table says."""
    logo = tmp_path_factory.mktemp("brand") / "logo.png"
    logo.write_bytes(images.png(images.solid(40, 20, images.RED)))
    variants = [
        {"name": "marked", "width": 300, "format": "png",
         "watermark": {"image": str(logo), "gravity": "northwest"}},
        {"name": "corner", "width": 100, "format": "png", "rotate": 90,
         "crop": {"width": 0.5, "height": 0.5, "gravity": "northwest"}},
    ]  # fmt: skip
    with live_pixpipe(tmp_path_factory, variants=variants) as pixpipe:
        state = pixpipe.processed("r/photo.jpg", images.jpeg(images.photo(1200, 800)))
        assert state["variants"]["corner"]["width"] == 100
        assert state["variants"]["corner"]["height"] == 150  # 600×400 turned: 400×600
        marked = fetched(pixpipe, "/images/marked/r/photo.png")
        assert images.pixel(marked, 5, 5)[:3] == list(images.RED)
        assert images.pixel(marked, 60, 40)[:3] != list(images.RED)


def test_a_recipe_naming_a_missing_watermark_file_is_refused_when_settings_load(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from pixpipe.config import Settings
    from pixpipe.recipe import RecipeError

    settings = Settings(variants=[{"name": "m", "width": 10, "watermark": {"image": "/no/logo"}}])
    with pytest.raises(RecipeError, match='variant "m": watermark image \'/no/logo\' cannot'):
        settings.recipe  # noqa: B018


@pytest.mark.parametrize(("data", "kind"), [
    (images.png_bomb(), "too_large"), (images.truncated(images.jpeg()), "corrupt"),
])  # fmt: skip
def test_hostile_sources_through_the_compatible_routes_are_422(
    live: Live, data: bytes, kind: str
) -> None:
    key = f".hostile/{kind}-{len(data)}.png"  # a dot folder: the drop-folder watcher skips it
    path = live.settings.data_dir / "originals" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for url in (via_imgproxy("rs:fit:100:100", key), via_thumbor("100x100", key)):
        response = live.http.get(url)
        assert response.status_code == 422, response.text
        assert response.json()["kind"] == kind


def test_missing_and_expired_signatures_are_403(live: Live) -> None:
    assert live.http.get(f"/imgproxy/rs:fit:100:100/plain/local:///{PHOTO}").status_code == 403
    assert live.http.get(f"/thumbor/100x100/{PHOTO}").status_code == 403  # no hmac segment
    expired = live.http.get(via_imgproxy("exp:1000/rs:fit:100:100", PHOTO))
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]


@pytest.mark.parametrize(("imgproxys", "thumbors", "media"), [
    ("rs:fit:200:200/f:avif", "200x200/filters:format(avif)", "image/avif"),
    ("rs:fit:200:200/f:webp", "200x200/filters:format(webp)", "image/webp"),
    ("rs:fit:200:200/f:gif", "200x200/filters:format(gif)", "image/gif"),
])  # fmt: skip
def test_output_formats_through_both_routes(
    live: Live, imgproxys: str, thumbors: str, media: str
) -> None:
    for url in (via_imgproxy(imgproxys, PHOTO), via_thumbor(thumbors, PHOTO)):
        response = live.http.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media
        assert max(images.decoded(response.content).width, 1) <= 200
