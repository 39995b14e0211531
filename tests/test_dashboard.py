"""The dashboard in a real browser: Playwright driving Debian's Chromium against a live pixpipe
(API, worker, real nats-server). Upload by the file picker and by drag and drop (presigned, with
progress), watch the variants arrive without a reload (Server-Sent Events), copy a variant's
versioned URL and the srcset, see corrupt uploads land in the failures list and retry them one
by one or all of a kind; the charts of throughput and latency, the queues, batches and
backfills follow what the API says. The dashboard's own endpoints (``http/dashboard.py``) are
tested here too, and their ring of counts on its own.

``PIXPIPE_SCREENSHOT=docs/dashboard.png`` (``make screenshot``) keeps a screenshot of the
dashboard at the end of the run; otherwise it goes to the test's temporary directory.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pixpipe.bus import CONSUMERS
from pixpipe.http.dashboard import BUCKET_S, KEEP_S, SAMPLES, Ring
from tests import images
from tests.test_http_harness import API_KEY, AUTH, Live, live_pixpipe

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
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 1280, "height": 1000},
        permissions=["clipboard-read", "clipboard-write"],
    )
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
    # Presigned, through upload.js: a grant from POST /v1/uploads, then the PUT it names.
    with (
        page.expect_request(lambda r: r.method == "PUT" and "/v1/uploads/harbour.jpg?" in r.url),
        page.expect_response(lambda r: r.url.endswith("/v1/uploads")) as granted,
    ):
        page.set_input_files("#files", str(photo))
    assert granted.value.status == 200
    assert granted.value.request.post_data_json["content_length"] == photo.stat().st_size
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


def api(live: Live, path: str, **params: Any) -> Any:
    response = live.http.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not after {timeout} s: {what}"
        time.sleep(0.2)


def width(locator: Any) -> float:
    """A bar part's width, in % of its bar (``common.js`` sets it inline)."""
    found = re.search(r"width:\s*([0-9.]+)%", locator.get_attribute("style") or "")
    assert found, locator.get_attribute("style")
    return float(found[1])


# ---- the dashboard's own endpoints (http/dashboard.py) ----
@pytest.mark.parametrize("path", ["/v1/stats", "/v1/queues", "/v1/batches", "/v1/reprocess"])
def test_dashboard_endpoints_need_the_api_key(live: Live, path: str) -> None:
    assert live.http.get(path).status_code == 401
    assert live.http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert live.http.get(path, headers=AUTH).status_code == 200


def test_stats_are_intervals_over_the_last_minutes(live: Live) -> None:
    stats = api(live, "/v1/stats", minutes=5, step=60)
    assert (stats["step_s"], stats["minutes"], len(stats["points"])) == (60, 5, 5)
    times = [p["t"] for p in stats["points"]]
    assert all(b - a == 60 for a, b in itertools.pairwise(times))
    assert times[-1] <= stats["now"] < times[-1] + 60  # the last one is the current one
    assert stats["since"] <= stats["now"]
    assert set(stats["window"]) == set(stats["last_minute"]) == {
        "processed", "failed", "per_min", "p50_s", "p95_s",
    }  # fmt: skip
    assert stats["window"]["processed"] == sum(p["processed"] for p in stats["points"])
    assert stats["window"]["processed"] >= 2  # the two good uploads of the tests above
    assert stats["window"]["failed"] >= 1  # and the corrupt one
    assert 0 < stats["window"]["p50_s"] <= stats["window"]["p95_s"]
    for bad in ({"step": 15}, {"step": 5}, {"minutes": 0}, {"minutes": KEEP_S // 60 + 1}):
        assert live.http.get("/v1/stats", params=bad, headers=AUTH).status_code == 422, bad


def test_queues_are_every_consumer_with_its_backlog(live: Live) -> None:
    queues = api(live, "/v1/queues")
    assert [q["consumer"] for q in queues] == list(CONSUMERS)
    for q in queues:
        assert q["stream"] == CONSUMERS[q["consumer"]].stream
        assert isinstance(q["pending"], int) and q["pending"] >= 0, q
        assert isinstance(q["ack_pending"], int) and q["ack_pending"] >= 0, q


def test_batches_listing_newest_first_with_counts(live: Live) -> None:
    for batch_id in ("order-1040", "order-1041"):
        body = {"id": batch_id, "expected": 2}
        assert live.http.post("/v1/batches", json=body, headers=AUTH).status_code == 201
    listed = api(live, "/v1/batches")
    assert [b["id"] for b in listed[:2]] == ["order-1041", "order-1040"]
    first = listed[0]
    assert {k: first[k] for k in ("expected", "received", "state", "done", "failed")} == {
        "expected": 2, "received": 0, "state": "open", "done": 0, "failed": 0,
    }  # fmt: skip
    assert first["created"] <= first["updated"]
    assert [b["id"] for b in api(live, "/v1/batches", limit=1)] == ["order-1041"]
    assert not [b for b in api(live, "/v1/batches", state="done") if b["id"] == "order-1041"]


# ---- the ring of counts and times, on its own ----
def test_ring_counts_and_percentiles_per_interval() -> None:
    from pixpipe.events import SUBJECT_IMAGE_FAILED, SUBJECT_IMAGE_PROCESSED

    now = 3005.0
    ring = Ring(clock=lambda: now)
    for seconds in (0.4, 0.1, 1.0, 0.3, 0.2):
        ring.processed(seconds, now=2915)
    ring.on_event(SUBJECT_IMAGE_PROCESSED, json.dumps({"duration_ms": 2000}).encode())
    ring.processed(9.0, now=2800)  # before the window
    ring.failed(now=2975)
    ring.on_event(SUBJECT_IMAGE_FAILED, b'{"kind": "corrupt"}')
    ring.on_event(SUBJECT_IMAGE_PROCESSED, b"not json")
    stats = ring.series(minutes=2, step=30)
    assert [p["t"] for p in stats["points"]] == [2910, 2940, 2970, 3000]
    assert [p["processed"] for p in stats["points"]] == [5, 0, 0, 1]
    assert [p["failed"] for p in stats["points"]] == [0, 0, 1, 1]
    assert stats["points"][0] | {"t": 0} == {
        "t": 0, "processed": 5, "failed": 0, "per_min": 10.0, "p50_s": 0.3, "p95_s": 1.0,
    }  # fmt: skip
    assert stats["points"][1]["p50_s"] is None
    assert stats["window"] == {
        "processed": 6, "failed": 2, "per_min": 3.0, "p50_s": 0.3, "p95_s": 2.0,
    }  # fmt: skip
    # The last minute: from 2950 on (the current 10 s bucket and the five before it).
    assert stats["last_minute"] | {"per_min": 0} == {
        "processed": 1, "failed": 2, "per_min": 0, "p50_s": 2.0, "p95_s": 2.0,
    }  # fmt: skip
    assert stats["last_minute"]["per_min"] == round(60 / 55, 2)


def test_ring_memory_is_bounded() -> None:
    ring = Ring(clock=lambda: 0.0)
    for i in range(10 * SAMPLES):
        ring.processed(i / 1000, now=5)
    (bucket,) = ring.buckets.values()
    assert (bucket.processed, bucket.timed, len(bucket.seconds)) == (10 * SAMPLES, 10 * SAMPLES,
                                                                      SAMPLES)  # fmt: skip
    median = ring.series(minutes=1, step=BUCKET_S, now=5)["window"]["p50_s"]
    assert abs(median - 10 * SAMPLES / 2000) < 0.15 * 10 * SAMPLES / 2000  # a fair sample
    ring.processed(1.0, now=KEEP_S + BUCKET_S)  # an hour on: the first bucket is dropped
    assert list(ring.buckets) == [KEEP_S + BUCKET_S]


# ---- the dashboard shows it ----
def test_throughput_and_latency_charts_follow_the_stats(page: Page, live: Live) -> None:
    before = api(live, "/v1/stats")["window"]["processed"]
    for seed in range(3):
        data = images.jpeg(images.photo(640, 480, seed=20 + seed))
        live.processed(f"charts/photo-{seed}.jpg", data)
    throughput = page.locator("#chart-throughput")
    expect(throughput).to_have_attribute("data-processed", str(before + 3))
    stats = api(live, "/v1/stats")  # the dashboard's window: 15 min per 30 s
    assert stats["window"]["processed"] == before + 3
    assert throughput.get_attribute("data-points") == str(len(stats["points"])) == "30"
    latency = page.locator("#chart-latency")
    expect(latency).not_to_have_attribute("data-p95", "")
    assert float(latency.get_attribute("data-p95") or 0) == stats["window"]["p95_s"] > 0
    assert float(latency.get_attribute("data-p50") or 0) == stats["window"]["p50_s"] > 0
    expect(page.locator("#legend-p95")).to_have_text(re.compile(r"^p95 [0-9.]+ s$"))
    expect(page.locator("#m-rate")).not_to_have_text("–")
    inked = """(c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    assert throughput.evaluate(inked) > 1000 and latency.evaluate(inked) > 1000  # really drawn


def test_queue_depth_per_consumer(page: Page, live: Live) -> None:
    expect(page.locator("#queues tbody tr")).to_have_count(len(CONSUMERS))
    for q in api(live, "/v1/queues"):
        row = page.locator(f'#queues tr[data-consumer="{q["consumer"]}"]')
        expect(row.locator(".pending")).to_have_text(str(q["pending"]))
        expect(row.locator(".ack-pending")).to_have_text(str(q["ack_pending"]))
    # A backlog, as the API would report one, drawn to scale.
    backlog = [{"consumer": name, "stream": c.stream, "pending": 0, "ack_pending": 0}
               for name, c in CONSUMERS.items()]  # fmt: skip
    backlog[0] |= {"pending": 30, "ack_pending": 10}
    backlog[1] |= {"pending": 5}
    page.route("**/v1/queues", lambda route: route.fulfill(json=backlog))
    variants = page.locator(f'#queues tr[data-consumer="{backlog[0]["consumer"]}"]')
    expect(variants.locator(".pending")).to_have_text("30")
    assert width(variants.locator(".bar .waiting")) == 75.0
    assert width(variants.locator(".bar .flight")) == 25.0
    other = page.locator(f'#queues tr[data-consumer="{backlog[1]["consumer"]}"]')
    assert width(other.locator(".bar .waiting")) == 12.5


def test_batch_progress(page: Page, live: Live) -> None:
    body = {"id": "order-1042", "expected": 3}
    assert live.http.post("/v1/batches", json=body, headers=AUTH).status_code == 201

    def upload(n: int) -> None:
        params = {"key": f"orders/1042/{n}.jpg", "batch": "order-1042"}
        data = images.jpeg(images.photo(500, 400, seed=30 + n))
        response = live.http.post("/v1/images", params=params, content=data, headers=AUTH)
        assert response.status_code == 201, response.text

    upload(1)
    upload(2)
    row = page.locator('#batches tr[data-batch="order-1042"]')
    expect(row.locator(".received")).to_have_text("2/3")
    expect(row).to_have_attribute("data-state", "open")
    assert round(width(row.locator(".bar .arrived")), 1) == 66.7
    upload(3)
    expect(row).to_have_attribute("data-state", "done")
    expect(row.locator(".processed")).to_have_text("3/3")
    expect(row.locator(".counts")).to_have_text(" 3 done · 0 failed")
    assert width(row.locator(".bar .done")) == 100.0
    assert live.http.get("/v1/batches/order-1042").json()["done"] == 3


def test_backfill_run_progress(page: Page, live: Live) -> None:
    body = {"variants": ["sq-s"], "prefix": "charts/"}
    started = live.http.post("/v1/reprocess", json=body, headers=AUTH)
    assert started.status_code == 202
    run = started.json()["run"]
    row = page.locator(f'#runs tr[data-run="{run}"]')
    expect(row).to_have_attribute("data-state", "done")
    (listed,) = [r for r in api(live, "/v1/reprocess") if r["run"] == run]
    assert (listed["state"], listed["listed"], listed["listing_done"]) == ("done", 3, True)
    assert listed["done"] + listed["skipped"] == 3 and listed["failed"] == 0
    assert listed["started_here"] and listed["eta_s"] == 0 and listed["rate_per_s"] > 0
    expect(row.locator(".name")).to_have_text("sq-s under charts/")
    expect(row.locator(".finished")).to_have_text("3/3")
    expect(row.locator(".eta")).to_contain_text("took")
    assert width(row.locator(".bar .done")) == 100.0
    # Under way, as the API reports a run mid-listing: its progress, rate and ETA.
    running = listed | {
        "run": "0123456789abcdef", "state": "running", "listed": 200, "listing_done": False,
        "done": 40, "skipped": 10, "failed": 0, "seconds": 10.0, "rate_per_s": 5.0, "eta_s": 30.0,
    }  # fmt: skip
    page.route("**/v1/reprocess", lambda route: route.fulfill(json=[running]))
    mid = page.locator(f'#runs tr[data-run="{running["run"]}"]')
    expect(mid.locator(".finished")).to_have_text("50/200+")
    expect(mid.locator(".rate")).to_have_text("5/s")
    expect(mid.locator(".eta")).to_have_text("≥ 30 s left")  # a floor: still listing
    assert width(mid.locator(".bar .done")) == 25.0


def test_failures_filter_by_kind_and_retry_all(page: Page, live: Live) -> None:
    bombs = ["bombs/one.png", "bombs/two.png"]
    for key in bombs:
        assert live.upload(key, images.png_bomb()).status_code == 201
    for key in bombs:
        assert live.wait(key)["error"]["kind"] == "too_large"  # type: ignore[index]
    before = {key: live.state(key)["updated"] for key in [*bombs, "broken.jpg"]}  # type: ignore[index]
    expect(page.locator('#failures tr[data-key="bombs/two.png"]')).to_be_visible()
    expect(page.locator('#failures tr[data-key="broken.jpg"]')).to_be_visible()
    page.locator("#failure-kind").select_option("too_large")
    rows = page.locator("#failures tbody tr")
    expect(rows).to_have_count(2)
    assert {rows.nth(i).get_attribute("data-kind") for i in range(2)} == {"too_large"}
    assert rows.nth(0).locator(".name").get_attribute("title") in bombs
    retried: list[tuple[str, int]] = []
    page.on("response", lambda r: retried.append((r.url, r.status)) if "/retry" in r.url else None)
    expect(page.locator("#retry-all")).to_have_text("Retry all 2")
    page.locator("#retry-all").click()
    expect(page.locator("#retry-result")).to_have_text("Retried 2 of 2 (too_large)")
    for _ in range(50):
        if len(retried) >= 2:
            break
        page.wait_for_timeout(100)
    assert sorted(retried) == sorted(
        (f"{live.url}/v1/failures/{quote(key)}/retry", 202) for key in bombs
    )
    # The API's word: both went back in line and failed again (still bombs); the corrupt
    # upload, of another kind, was left alone.
    for key in bombs:
        eventually(lambda key=key: (s := live.state(key)) is not None and s["state"] == "failed"
                   and s["updated"] > before[key], f"{key} retried and failed again")  # fmt: skip
    assert live.state("broken.jpg")["updated"] == before["broken.jpg"]  # type: ignore[index]
    expect(rows).to_have_count(2)  # back in the list, still filtered


def test_variant_urls_and_srcset_to_copy(page: Page, live: Live) -> None:
    state = live.state("harbour.jpg")
    assert state is not None
    card(page, "harbour.jpg").click()
    url = state["variants"]["m"]["url"]
    assert "?v=" in url
    m = page.locator('#detail [data-variant="m"]')
    expect(m.locator("code.url")).to_have_text(url)
    expect(m.locator("code.url")).to_have_attribute("title", url)
    m.locator("button.copy").click()
    expect(m.locator("button.copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url
    srcset = live.http.get("/v1/images/harbour.jpg/srcset").json()
    expect(page.locator("#srcset-text")).to_have_text(srcset["srcset"])
    page.locator("#srcset-copy button", has_text="Copy srcset").click()
    assert page.evaluate("navigator.clipboard.readText()") == srcset["srcset"]
    page.locator("#srcset-copy button", has_text="Copy <img>").click()
    tag = page.evaluate("navigator.clipboard.readText()")
    assert tag == (f'<img src="{srcset["src"]}" srcset="{srcset["srcset"]}" '
                   f'sizes="{srcset["sizes"]}" alt="">')  # fmt: skip


LONG_KEY = "clients/acme-photography/2025/summer-campaign/final-selects/IMG_20250614_101500.jpg"


def test_truncated_keys_show_in_full_on_hover(page: Page, live: Live) -> None:
    live.processed(LONG_KEY, images.jpeg(images.photo(600, 400, seed=8)))
    name = card(page, LONG_KEY).locator(".name")
    expect(name).to_have_attribute("title", LONG_KEY)
    assert name.evaluate("(e) => e.scrollWidth > e.clientWidth")  # cut short on screen
    card(page, LONG_KEY).click()
    expect(page.locator("#detail-key")).to_have_attribute("title", LONG_KEY)
    failed = page.locator('#failures tr[data-key="broken.jpg"] .name')
    expect(failed).to_have_attribute("title", "broken.jpg")


def test_metrics_panel_and_screenshot(page: Page, live: Live, tmp_path: Path) -> None:
    """The throughput/latency panel fills from /metrics; then a picture for docs/ with every
    panel showing what the tests above left (batches, a backfill, failures)."""
    for seed, (w, h) in enumerate([(1600, 1000), (900, 1200), (1000, 1000)], start=10):
        live.processed(f"shots/photo-{seed}.jpg", images.jpeg(images.photo(w, h, seed=seed)))
    page.reload()
    expect(page.locator("#m-processed")).not_to_have_text("0")
    expect(page.locator("#m-p95")).to_contain_text("≤")
    page.wait_for_function("() => document.querySelector('#m-rate').textContent !== '–'")
    expect(page.locator("#chart-throughput")).not_to_have_attribute("data-processed", "0")
    expect(page.locator("#batches tbody tr").first).to_be_visible()
    expect(page.locator("#runs tbody tr").first).to_be_visible()
    expect(page.locator("#queues tbody tr")).to_have_count(len(CONSUMERS))
    card(page, "shots/photo-10.jpg").click()
    expect(page.locator("#srcset-text")).not_to_be_empty()
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
