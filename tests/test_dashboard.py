"""The dashboard in a real browser: Playwright driving Debian's Chromium against a live pixpipe
(API, worker, real nats-server). Upload by the file picker and by drag and drop, watch the
variants arrive without a reload (Server-Sent Events), see a corrupt upload land in the
failures list and retry it.

``PIXPIPE_SCREENSHOT=docs/dashboard.png`` (``make screenshot``) keeps a screenshot of the
dashboard at the end of the run; otherwise it goes to the test's temporary directory.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import images
from tests.test_http_harness import API_KEY, Live, live_pixpipe

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.xdist_group("dashboard"),  # one browser, one live pixpipe, tests in order
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api")
Page = sync_api.Page
expect = sync_api.expect
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory) as pixpipe:
        yield pixpipe


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: object, live: Live) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The key in the fragment, as `pixpipe up` prints the dashboard's URL.
    page.goto(f"{live.url}/#key={API_KEY}")
    expect(page.locator("#live.on")).to_be_visible()  # the SSE stream is open
    yield page
    context.close()
    assert not errors, errors


def card(page: Page, key: str) -> object:
    return page.locator(f'#gallery figure.card[data-key="{key}"]')


def drop_file(page: Page, name: str, data: bytes, mime: str) -> None:
    """A drag and drop of one file onto the drop zone, as the browser would dispatch it."""
    page.evaluate(
        """([name, b64, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const zone = document.querySelector("#drop");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true,
                                                         cancelable: true }));
            }
        }""",
        [name, base64.b64encode(data).decode(), mime],
    )


def test_upload_then_variants_appear_live(page: Page, live: Live, tmp_path: Path) -> None:
    photo = tmp_path / "harbour.jpg"
    photo.write_bytes(images.jpeg(images.photo(1200, 800, seed=3)))
    page.set_input_files("#files", str(photo))
    row = page.locator('#uploads li[data-key="harbour.jpg"]')
    expect(row.locator(".status")).to_have_text("uploaded")
    assert row.locator("progress").get_attribute("value") == "100"
    # No reload: the card turns done and gets its thumbnail from the live stream.
    expect(card(page, "harbour.jpg")).to_have_attribute("data-state", "done")
    thumb = card(page, "harbour.jpg").locator("img")
    version = live.state("harbour.jpg")["variants"]["sq-s"]["version"]  # type: ignore[index]
    expect(thumb).to_have_attribute("src", f"{live.url}/images/sq-s/harbour.jpg?v={version}")
    page.wait_for_function("() => document.querySelector('#gallery img').naturalWidth === 150")
    # The detail view: every variant side by side, with its size, bytes and format.
    card(page, "harbour.jpg").click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(page.locator("#detail-key")).to_have_text("harbour.jpg")
    expect(detail.locator("figure.variant")).to_have_count(6)
    expect(detail.locator('[data-variant="m"] figcaption')).to_contain_text("800×533")
    expect(detail.locator('[data-variant="sq-s"] figcaption')).to_contain_text("150×150")
    expect(detail.locator('[data-variant="sq-s"] figcaption')).to_contain_text("kB · jpeg")


def test_drag_and_drop_upload(page: Page, live: Live) -> None:
    drop_file(page, "dropped.png", images.png(images.photo(500, 400, seed=5)), "image/png")
    expect(page.locator('#uploads li[data-key="dropped.png"] .status')).to_have_text("uploaded")
    expect(card(page, "dropped.png")).to_have_attribute("data-state", "done")
    assert live.state("dropped.png")["variants"]["s"]["format"] == "jpeg"  # type: ignore[index]


def test_corrupt_upload_lands_in_failures_and_retries(page: Page, live: Live) -> None:
    expect(page.locator("#no-failures")).to_be_visible()
    drop_file(page, "broken.jpg", images.truncated(images.jpeg()), "image/jpeg")
    expect(card(page, "broken.jpg")).to_have_attribute("data-state", "failed")
    row = page.locator('#failures tr[data-key="broken.jpg"]')
    expect(row.locator(".kind")).to_have_text("corrupt")
    expect(row.locator(".message")).not_to_be_empty()
    with page.expect_response(lambda r: "/retry" in r.url) as retried:
        row.locator("button.retry").click()
    assert retried.value.status == 202
    # Back in line, and (still corrupt) back in the failures list with a fresh retry button.
    expect(card(page, "broken.jpg")).to_have_attribute("data-state", "failed")
    expect(row.locator("button.retry")).to_be_enabled()
    expect(row).not_to_have_class("retrying")
    assert live.state("broken.jpg")["error"]["kind"] == "corrupt"  # type: ignore[index]


def test_metrics_panel_and_screenshot(page: Page, live: Live, tmp_path: Path) -> None:
    """The throughput/latency panel fills from /metrics; then a picture for docs/."""
    for seed, (w, h) in enumerate([(1600, 1000), (900, 1200), (1000, 1000)], start=10):
        live.processed(f"shots/photo-{seed}.jpg", images.jpeg(images.photo(w, h, seed=seed)))
    page.reload()
    expect(page.locator("#m-processed")).not_to_have_text("0")
    expect(page.locator("#m-p95")).to_contain_text("≤")
    page.wait_for_function("() => document.querySelector('#m-rate').textContent !== '–'")
    card(page, "shots/photo-10.jpg").click()
    expect(page.locator("#detail figure.variant")).to_have_count(6)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#detail img, #gallery img')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("PIXPIPE_SCREENSHOT"):
        shutil.copyfile(shot, target)
