"""``pixpipe.client`` against a live pixpipe (API, worker, real nats-server): every test runs on
``Client`` and on ``AsyncClient`` (driven on a loop of its own), so one text is the spec of
both. Uploads of bytes, paths and files with progress, presigned uploads (pixpipe's own URL,
and S3's presigned POST on moto), ``wait`` over SSE (done, failed, timed out), batches,
signed transforms, webhooks, the API's refusals as ``PixpipeClientError``; and the browser
module ``/static/upload.js`` in Chromium."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from pixpipe.bus import EmbeddedServer
from pixpipe.client import (
    AsyncClient,
    BadWebhook,
    Batch,
    Client,
    ImageState,
    PixpipeClientError,
    ProcessingFailed,
    Srcset,
    Uploaded,
    WaitTimeout,
    verify_webhook,
)  # fmt: skip
from pixpipe.client._events import EventReader
from pixpipe.pipeline.notify import standard_headers
from tests import images
from tests.conftest_services import MotoS3
from tests.test_http_harness import (
    API_KEY,
    MAX_BYTES,
    SECRET,
    Live,
    live_pixpipe,
    running,
    settings_for,
)

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("client")]
JPEG = images.jpeg(images.photo(400, 300))
BIG_JPEG = images.jpeg(images.photo(1200, 800))  # several 64 KiB chunks
DEFAULT_VARIANTS = {"xl", "l", "m", "s", "sq-m", "sq-s"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory) as pixpipe:
        yield pixpipe


class Blocking:
    """An ``AsyncClient`` called like a ``Client``: each coroutine runs on an event loop in a
    thread of its own (one loop for the client's life, so its connection pool stays valid)."""

    def __init__(self, make: Callable[[], AsyncClient]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.client = self._run(self._made(make))

    @staticmethod
    async def _made(make: Callable[[], AsyncClient]) -> AsyncClient:
        return make()

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=120)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not inspect.iscoroutinefunction(method):
            return method
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))

    def close(self) -> None:
        self._run(self.client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def _client(kind: str, url: str, **options: Any) -> Any:
    if kind == "sync":
        return Client(url, **options)
    return Blocking(lambda: AsyncClient(url, **options))


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def px(live: Live, kind: str) -> Iterator[Any]:
    """A client with the API key and the signing secret, sync or async."""
    client = _client(kind, live.url, api_key=API_KEY, signing_secret=SECRET)
    yield client
    client.close()


def key_for(kind: str, name: str) -> str:
    return f"client/{kind}/{uuid.uuid4().hex[:6]}/{name}"


# ---- uploads and state -----------------------------------------------------------------------


def test_upload_bytes_then_wait_state_variant_urls_and_srcset(px: Any, kind: str) -> None:
    key = key_for(kind, "IMG 1.jpg")
    uploaded = px.upload(key, JPEG)
    assert isinstance(uploaded, Uploaded)
    assert (uploaded.key, uploaded.state) == (key, "pending")
    assert set(uploaded.variants) == DEFAULT_VARIANTS
    assert px.fetch(uploaded.original_url) == JPEG  # served as soon as the upload returns

    done = px.wait(key, timeout=60)
    assert isinstance(done, ImageState) and done.state == "done" and done.final
    m = done.variants["m"]
    assert (m.width, m.height, m.format) == (400, 300, "jpeg")  # never enlarged
    assert m.bytes > 0 and m.version and m.url.endswith(f"?v={m.version}")
    assert done.placeholder and done.updated is not None
    assert px.state(key) == done

    urls = px.variant_urls(key)
    assert urls == {name: v.url for name, v in done.variants.items()}
    assert images.decoded(px.fetch(urls["sq-s"])).width == 150

    srcset = px.srcset(key, sizes="50vw")
    assert isinstance(srcset, Srcset) and srcset.sizes == "50vw"
    assert srcset.src in urls.values() and f"{urls['s']} 400w" in srcset.srcset
    widths = px.srcset(key, widths=[200, 300], options={"f": "webp"})
    assert widths.srcset.count("/t/") == 2 and "w:200/f:webp" in widths.srcset
    assert images.decoded(px.fetch(widths.src)).width in (200, 300)


def _recorder() -> tuple[list[tuple[int, int | None]], Callable[[int, int | None], None]]:
    calls: list[tuple[int, int | None]] = []
    return calls, lambda sent, total: calls.append((sent, total))


def _assert_progress(calls: list[tuple[int, int | None]], total: int) -> None:
    assert len(calls) >= 2, calls  # more than one chunk: sent as it goes, not at once
    sent = [s for s, _ in calls]
    assert sent == sorted(set(sent)), "counts go up"
    assert {t for _, t in calls} == {total} and calls[-1] == (total, total)


def test_upload_a_path_streams_it_with_progress(px: Any, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "big photo.jpg"
    path.write_bytes(BIG_JPEG)
    calls, progress = _recorder()
    key = key_for(kind, "big.jpg")
    assert px.upload(key, path, progress=progress).state == "pending"
    _assert_progress(calls, len(BIG_JPEG))
    assert px.wait(key).variants["m"].width == 800
    assert px.fetch(f"/images/original/{key}") == BIG_JPEG


def test_upload_a_file_object_from_where_it_is(px: Any, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "prefixed.bin"
    path.write_bytes(b"HEADER" + JPEG)
    key = key_for(kind, "file.jpg")
    with path.open("rb") as file:
        file.read(6)  # the upload starts where the file is
        px.upload(key, file, content_type="image/jpeg")
        assert not file.closed  # the caller's file stays the caller's
    assert px.wait(key).state == "done"
    assert px.fetch(f"/images/original/{key}") == JPEG
    with pytest.raises(TypeError, match="binary"):
        px.upload(key, io.StringIO("text"))


class Unseekable(io.BytesIO):
    """A stream whose length cannot be known in advance (a pipe, a socket)."""

    def seekable(self) -> bool:
        return False


def test_a_stream_of_unknown_length_is_sent_chunked(px: Any, kind: str) -> None:
    calls, progress = _recorder()
    key = key_for(kind, "piped.jpg")
    px.upload(key, Unseekable(BIG_JPEG), progress=progress)
    assert calls[-1] == (len(BIG_JPEG), None) and len(calls) > 1
    assert px.wait(key).state == "done"
    with pytest.raises(ValueError, match="length"):
        px.presigned_upload(key, Unseekable(JPEG), "image/jpeg")


def test_presigned_upload_through_pixpipes_own_url(px: Any, kind: str) -> None:
    key = key_for(kind, "pre.jpg")
    grant = px.presign(key, "image/jpeg", len(JPEG))
    assert grant.method == "PUT" and "/v1/uploads/" in grant.url and "token=" in grant.url
    assert grant.to_json()["headers"] == {"Content-Type": "image/jpeg"}

    calls, progress = _recorder()
    key = key_for(kind, "presigned.jpg")
    uploaded = px.presigned_upload(key, BIG_JPEG, "image/jpeg", progress=progress)
    assert isinstance(uploaded, Uploaded) and uploaded.key == key
    _assert_progress(calls, len(BIG_JPEG))
    assert px.wait(key).state == "done"


def test_presigned_upload_of_another_type_is_refused(px: Any, kind: str) -> None:
    with pytest.raises(PixpipeClientError) as refused:
        px.presigned_upload(key_for(kind, "lie.jpg"), images.png(images.photo(64, 48)),
                            "image/jpeg")  # fmt: skip
    assert (refused.value.status, refused.value.kind) == (415, "unsupported")


# ---- wait ------------------------------------------------------------------------------------


def test_wait_on_a_key_never_uploaded_times_out(px: Any, kind: str) -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timed_out:
        px.wait(key_for(kind, "never.jpg"), timeout=1.5)
    assert 1.5 <= time.monotonic() - started < 4
    assert isinstance(timed_out.value, TimeoutError) and timed_out.value.state is None


BROKEN = {"truncated": images.truncated(JPEG), "noise": b"\xff\xd8\xff" + images.random_bytes()}


@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_file_makes_wait_raise_processing_failed(
    px: Any, kind: str, broken: bytes
) -> None:
    key = key_for(kind, "broken.jpg")
    assert px.upload(key, broken).state == "pending"  # JPEG by its first bytes: taken
    with pytest.raises(ProcessingFailed) as failed:
        px.wait(key, timeout=60)
    assert failed.value.kind == "corrupt" and failed.value.message
    assert failed.value.state.state == "failed" and failed.value.state.error is not None
    assert px.state(key).error == failed.value.state.error


# ---- batches ---------------------------------------------------------------------------------


def test_a_batch_opened_filled_and_done(px: Any, kind: str) -> None:
    batch_id = f"order-{kind}-{uuid.uuid4().hex[:6]}"
    opened = px.open_batch(batch_id, expected=2, deadline_s=600)
    assert isinstance(opened, Batch)
    assert (opened.state, opened.received, opened.expected) == ("open", 0, 2)
    assert opened.deadline is not None and opened.deadline > datetime.now(UTC)
    assert px.open_batch(batch_id, expected=2).id == batch_id  # asking again is safe
    first, second = key_for(kind, "order/1.jpg"), key_for(kind, "order/2.jpg")
    px.upload(first, JPEG, batch=batch_id)
    assert px.batch(batch_id).received == 1
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as held:  # held until the batch is complete
        px.wait(first, timeout=1.5)
    assert held.value.state is not None and held.value.state.state == "pending"
    assert time.monotonic() - started < 4  # the deadline holds on an open, idle stream
    px.upload(second, JPEG, batch=batch_id)
    assert px.wait(first).state == px.wait(second).state == "done"
    deadline = time.monotonic() + 30
    while (batch := px.batch(batch_id)).state != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (batch.state, batch.received, batch.done, batch.failed) == ("done", 2, 2, 0)
    with pytest.raises(PixpipeClientError) as closed:
        px.upload(key_for(kind, "order/3.jpg"), JPEG, batch=batch_id)
    assert closed.value.status == 409


# ---- signed transforms -----------------------------------------------------------------------


def test_sign_makes_a_url_the_server_answers(px: Any, kind: str, live: Live) -> None:
    key = key_for(kind, "signed me.jpg")
    px.upload(key, JPEG)
    url = px.sign({"w": 120, "f": "webp"}, key)
    assert url.startswith(f"{live.url}/t/")
    image = images.decoded(px.fetch(url))
    assert image.width == 120 and image.get("vips-loader").startswith("webp")
    expiring = px.sign("w:100", key, expires_in=600)
    assert "exp:" in expiring and images.decoded(px.fetch(expiring)).width == 100

    signature = url.split("/")[4]
    tampered = url.replace(signature, ("A" if signature[0] != "A" else "B") + signature[1:])
    with pytest.raises(PixpipeClientError) as refused:
        px.fetch(tampered)
    assert refused.value.status == 403
    with pytest.raises(PixpipeClientError) as other_width:
        px.fetch(url.replace("w:120", "w:121"))
    assert other_width.value.status == 403
    with pytest.raises(ValueError, match="zoom"):
        px.sign("zoom:2", key)


def test_sign_needs_the_secret(live: Live, kind: str) -> None:
    client = _client(kind, live.url)
    try:
        with pytest.raises(ValueError, match="signing_secret"):
            client.sign("w:100", "a.jpg")
    finally:
        client.close()


# ---- errors ----------------------------------------------------------------------------------


def test_refusals_are_pixpipe_client_errors(px: Any, kind: str, live: Live) -> None:
    anonymous = _client(kind, live.url)
    try:
        with pytest.raises(PixpipeClientError) as no_key:
            anonymous.upload(key_for(kind, "anon.jpg"), JPEG)
        assert no_key.value.status == 401 and "API key" in str(no_key.value.detail)
        with pytest.raises(PixpipeClientError) as no_key_batch:
            anonymous.open_batch(f"anon-{kind}", 1)
        assert no_key_batch.value.status == 401
    finally:
        anonymous.close()
    with pytest.raises(PixpipeClientError) as too_big:
        px.upload(key_for(kind, "big.jpg"), JPEG[:4] + bytes(MAX_BYTES))
    assert (too_big.value.status, too_big.value.kind) == (413, "too_large")
    with pytest.raises(PixpipeClientError) as not_image:
        px.upload(key_for(kind, "text.jpg"), b"just some text, not an image")
    assert (not_image.value.status, not_image.value.kind) == (415, "unsupported")
    with pytest.raises(PixpipeClientError) as unknown:
        px.state(key_for(kind, "unknown.jpg"))
    assert unknown.value.status == 404 and unknown.value.kind is None
    with pytest.raises(PixpipeClientError) as no_batch:
        px.batch("no-such-batch")
    assert no_batch.value.status == 404
    with pytest.raises(PixpipeClientError) as bad_key:
        px.upload("../escape.jpg", JPEG)
    assert bad_key.value.status == 400


def test_a_503_carries_retry_after() -> None:
    request = httpx.Request("GET", "http://pixpipe/t/sig/w:100/a.jpg")
    response = httpx.Response(503, json={"detail": "busy", "kind": "transient"},
                              headers={"Retry-After": "5"}, request=request)  # fmt: skip
    error = PixpipeClientError.of(response)
    assert (error.status, error.kind, error.detail) == (503, "transient", "busy")
    assert error.retry_after == 5.0
    assert "GET /t/sig/w:100/a.jpg" in str(error)


# ---- wait's connections, on a scripted server ------------------------------------------------


def _state_event(state: str) -> bytes:
    body = {"key": "a.jpg", "state": state, "variants": {}}
    return f"event: state\nid: 1\ndata: {json.dumps(body)}\n\n".encode()


def _idle_after_a_keepalive() -> Iterator[bytes]:
    yield _state_event("processing") + b": keepalive\n\n"
    raise AssertionError("read on past a keepalive: the deadline could pass unseen")


def test_wait_connects_again_after_a_keepalive_and_a_404() -> None:
    stream = {"Content-Type": "text/event-stream"}
    answers = [
        httpx.Response(404, json={"detail": "no image 'a.jpg'"}),
        httpx.Response(200, content=_idle_after_a_keepalive(), headers=stream),
        httpx.Response(200, content=_state_event("done"), headers=stream),
    ]
    seen: list[float | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return answers[len(seen) - 1]

    with Client("http://pixpipe", transport=httpx.MockTransport(handler)) as client:
        assert client.wait("a.jpg", timeout=10).state == "done"
    assert len(seen) == 3
    reads = [read for read in seen if read is not None]
    assert reads == sorted(reads, reverse=True) and reads[0] <= 10  # the time left, each time


def test_event_reader_reads_events_and_skips_comments() -> None:
    reader = EventReader()
    lines = [": keepalive", "", "event: state", "id: 7", "data: {\"a\":", "data: 1}", "",
             "data:plain", ""]  # fmt: skip
    events = [event for line in lines if (event := reader.feed(line)) is not None]
    assert events == [("state", '{"a":\n1}'), ("message", "plain")]


# ---- webhooks --------------------------------------------------------------------------------


def _signed(secret: str, body: bytes, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {"webhook-id": "evt_1", "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign("evt_1", at, body.decode())}  # fmt: skip


SECRET_WH = "whsec_" + base64.b64encode(b"a-secret-of-the-receiver").decode()
BODY = json.dumps({"key": "a.jpg", "kind": "corrupt", "message": "bad", "attempts": 1}).encode()


def test_verify_webhook_takes_pixpipes_signature() -> None:
    headers = {name.title(): value for name, value in _signed(SECRET_WH, BODY).items()}
    assert verify_webhook(SECRET_WH, BODY, headers)["kind"] == "corrupt"  # names in any case
    # a plain-string secret, signed as pixpipe's notify role signs it
    body = b'{"id": "order-1", "done": 2, "failed": 0}'
    assert verify_webhook("plain secret", body, standard_headers("plain secret", "evt_9", body)) \
        == {"id": "order-1", "done": 2, "failed": 0}


@pytest.mark.parametrize(("secret", "body", "headers"), [
    pytest.param(SECRET_WH, BODY.replace(b"corrupt", b"transient"), _signed(SECRET_WH, BODY),
                 id="another body"),
    pytest.param("whsec_" + base64.b64encode(b"other").decode(), BODY, _signed(SECRET_WH, BODY),
                 id="another secret"),
    pytest.param(SECRET_WH, BODY, _signed(SECRET_WH, BODY, datetime.now(UTC) - timedelta(hours=1)),
                 id="a replay"),
    pytest.param(SECRET_WH, BODY, {"webhook-id": "evt_1"}, id="no signature"),
    pytest.param(SECRET_WH, BODY, {**_signed(SECRET_WH, BODY), "webhook-signature": "junk"},
                 id="a garbled signature"),
])  # fmt: skip
def test_verify_webhook_refuses_forgeries(secret: str, body: bytes, headers: dict) -> None:
    with pytest.raises(BadWebhook, match="not a webhook signed with this secret"):
        verify_webhook(secret, body, headers)


# ---- async in its own right, and the import ----------------------------------------------------


async def test_async_client_uploads_and_waits_concurrently(live: Live) -> None:
    keys = [key_for("gather", f"{n}.jpg") for n in range(3)]
    async with AsyncClient(live.url, api_key=API_KEY) as px:
        await asyncio.gather(*(px.upload(key, JPEG) for key in keys))
        states = await asyncio.gather(*(px.wait(key) for key in keys))
    assert [s.state for s in states] == ["done"] * 3 and [s.key for s in states] == keys


def test_importing_the_client_loads_no_server_parts() -> None:
    code = ("import sys, pixpipe.client; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'fastapi', 'starlette', 'pyvips', 'nats', 'obstore', 'uvicorn'}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- S3's presigned POST (moto) ----------------------------------------------------------------


def test_presigned_upload_to_s3_posts_the_form(
    aws_env: MotoS3, tmp_path_factory: pytest.TempPathFactory
) -> None:
    prefix = f"client-{uuid.uuid4().hex[:8]}"
    with EmbeddedServer(tmp_path_factory.mktemp("nats")) as server:
        stores = {"originals": f"s3://{aws_env.bucket}/{prefix}"}
        settings = settings_for(tmp_path_factory.mktemp("data"), server.url, stores=stores)
        with running(settings) as s3_live, Client(s3_live.url, api_key=API_KEY) as px:
            calls, progress = _recorder()
            assert px.presigned_upload("users/7/IMG 3.jpg", BIG_JPEG, "image/jpeg",
                                       progress=progress) is None  # fmt: skip
            _assert_progress(calls, len(BIG_JPEG))  # the file's bytes, not the form's
    stored = aws_env.client().get_object(Bucket=aws_env.bucket, Key=f"{prefix}/users/7/IMG 3.jpg")
    assert stored["ContentType"] == "image/jpeg" and stored["Body"].read() == BIG_JPEG


# ---- the browser module ------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_upload_js_sends_a_file_with_progress_in_a_browser(live: Live) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    served = httpx.get(f"{live.url}/static/upload.js")
    assert served.status_code == 200
    assert served.headers["content-type"].split(";")[0] == "text/javascript"
    key = key_for("browser", "drop.jpg")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(f"{live.url}/healthz")  # any page of the API's origin
            result = page.evaluate(
                """async ([key, apiKey, b64]) => {
                    const { upload, UploadError } = await import("/static/upload.js");
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const file = new File([bytes], "drop.jpg", { type: "image/jpeg" });
                    const progress = [];
                    const done = await upload(file, { key, apiKey,
                        onProgress: (sent, total) => progress.push([sent, total]) });
                    let refused = null;
                    try { await upload(file, { key: key + ".again" }); }
                    catch (error) { refused = [error instanceof UploadError, error.status]; }
                    return { done, progress, refused };
                }""",
                [key, API_KEY, base64.b64encode(BIG_JPEG).decode()],
            )
        finally:
            browser.close()
    assert result["done"]["status"] == 201 and result["done"]["body"]["key"] == key
    assert result["progress"][-1] == [len(BIG_JPEG), len(BIG_JPEG)]
    assert result["refused"] == [True, 401]  # no key: no grant
    with Client(live.url) as px:
        assert px.wait(key).state == "done"
