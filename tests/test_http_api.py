"""The API of PRODUCT.md §6 over real HTTP: uploads and every input check, state, live events,
failures and retry, invoke, bucket notifications, health and metrics."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pixpipe.config import Settings
from pixpipe.errors import Kind, PixpipeError
from pixpipe.http.app import _readiness, api_keys
from tests import images
from tests.test_http_harness import AUTH, MAX_BYTES, Live, free_port, live_pixpipe

# One worker per module under xdist: the module shares one live pixpipe.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("http-api")]
JPEG = images.jpeg(images.photo(640, 400))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory) as pixpipe:
        yield pixpipe


# ---- uploads ------------------------------------------------------------------------------


def test_upload_raw_body_then_variants_are_made(live: Live) -> None:
    response = live.upload("users/42/IMG 0001.jpg", JPEG)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"] == "users/42/IMG 0001.jpg" and body["state"] == "pending"
    assert body["original_url"].endswith("/images/original/users/42/IMG%200001.jpg")
    assert body["variants"]["m"].endswith("/images/m/users/42/IMG%200001.jpg")
    # The original is served as soon as the upload returns.
    assert live.http.get(body["original_url"]).content == JPEG
    state = live.wait("users/42/IMG 0001.jpg")
    assert state["state"] == "done"
    m = state["variants"]["m"]
    assert (m["width"], m["height"], m["format"]) == (640, 400, "jpeg")
    assert set(state["variants"]) == {"xl", "l", "m", "s", "sq-m", "sq-s"}
    assert state["placeholder"] and state["dominant"].startswith("#")
    assert live.http.get(state["variants"]["sq-s"]["url"]).headers["content-type"] == "image/jpeg"


def test_upload_multipart_field_file(live: Live) -> None:
    files = {"file": ("a.png", images.png(images.photo(300, 200)), "image/png")}
    response = live.http.post("/v1/images", params={"key": "multi/a.png"}, files=files,
                              headers=AUTH)  # fmt: skip
    assert response.status_code == 201, response.text
    assert live.wait("multi/a.png")["variants"]["s"]["width"] == 300


def test_multipart_without_file_field_is_400(live: Live) -> None:
    response = live.http.post("/v1/images", params={"key": "x.jpg"}, files={"other": JPEG},
                              headers=AUTH)  # fmt: skip
    assert response.status_code == 400
    assert "file" in response.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
def test_write_endpoints_need_the_api_key(live: Live, headers: dict[str, str]) -> None:
    calls = [
        ("POST", "/v1/images?key=a.jpg"), ("POST", "/v1/uploads"), ("POST", "/v1/invoke"),
        ("POST", "/v1/failures/a.jpg/retry"), ("POST", "/v1/events/s3"),
    ]  # fmt: skip
    for method, path in calls:
        response = live.http.request(method, path, content=JPEG, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert "Bearer" in response.json()["detail"]


BAD_KEYS = ["/abs.jpg", "a/../b.jpg", "./a.jpg", "a//b.jpg", "a\\b.jpg", "tab\there.jpg",
            "x" * 1025, "a/b#1"]  # fmt: skip


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_400(live: Live, key: str) -> None:
    response = live.upload(key, JPEG)
    assert response.status_code == 400, response.text
    assert "key" in response.json()["detail"]


def test_missing_or_empty_key_is_rejected(live: Live) -> None:
    assert live.http.post("/v1/images", content=JPEG, headers=AUTH).status_code == 422
    assert live.upload("", JPEG).status_code in (400, 422)


def test_oversized_upload_is_413(live: Live) -> None:
    response = live.upload("big.jpg", b"\xff\xd8\xff" + b"\0" * MAX_BYTES)
    assert response.status_code == 413
    assert response.json()["kind"] == "too_large"
    assert live.state("big.jpg") is None


def test_oversized_upload_without_content_length_is_413(live: Live) -> None:
    def chunks():  # chunked transfer: the limit is enforced while streaming
        yield b"\xff\xd8\xff" + b"\0" * 65533  # names a JPEG: the first bytes pass
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"\0" * 65536

    response = live.http.post("/v1/images", params={"key": "big2.jpg"}, content=chunks(),
                              headers=AUTH)  # fmt: skip
    assert response.status_code == 413


@pytest.mark.parametrize("data", [b"hello, world", b"<html><body>hi</body></html>",
                                  images.random_bytes(5000)])  # fmt: skip
def test_non_image_is_415(live: Live, data: bytes) -> None:
    response = live.upload("not-an-image.jpg", data)
    assert response.status_code == 415
    assert response.json()["kind"] == "unsupported"


def test_empty_upload_is_400(live: Live) -> None:
    assert live.upload("empty.jpg", b"").status_code == 400


def test_bomb_upload_is_kept_and_fails_as_too_large(live: Live) -> None:
    assert live.upload("bombs/png.png", images.png_bomb()).status_code == 201
    state = live.wait("bombs/png.png")
    assert state["state"] == "failed"
    assert state["error"]["kind"] == "too_large"


# ---- state, listing, live events ----------------------------------------------------------


def test_unknown_image_is_404_and_bad_key_400(live: Live) -> None:
    assert live.http.get("/v1/images/nope/none.jpg").status_code == 404
    assert live.http.get("/v1/images/a/../b").status_code in (400, 404)
    assert live.http.get("/v1/images/a%5Cb").status_code == 400


def test_recent_images_newest_first(live: Live) -> None:
    live.processed("recent/1.jpg", JPEG)
    live.processed("recent/2.jpg", JPEG)
    get = functools.partial(live.http.get, "/v1/images", headers=AUTH)
    listed = [s["key"] for s in get(params={"limit": 1000}).json()]
    assert listed.index("recent/2.jpg") < listed.index("recent/1.jpg")
    done = get(params={"state": "done", "limit": 1000}).json()
    assert {s["state"] for s in done} == {"done"}
    assert get(params={"state": "odd"}).status_code == 422
    assert get(params={"limit": 0}).status_code == 422


@pytest.mark.parametrize("path", ["/v1/images", "/v1/failures"])
def test_listings_need_the_api_key_and_come_in_pages(live: Live, path: str) -> None:
    for n in range(3):
        live.processed(f"pages/{n}.jpg", JPEG)
        assert live.upload(f"pages/bad{n}.jpg", images.truncated(JPEG)).status_code == 201
        live.wait(f"pages/bad{n}.jpg")
    assert live.http.get(path).status_code == 401
    assert live.http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    listed = live.http.get(path, headers=AUTH, params={"limit": 1000})
    everything = [s["key"] for s in listed.json()]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = live.http.get(path, headers=AUTH, params=params)
        assert page.status_code == 200 and len(page.json()) <= 2
        seen += [s["key"] for s in page.json()]
        cursor = page.headers.get("x-next-cursor")
        if cursor is None:
            break
        assert 'rel="next"' in page.headers["link"]
    # Every one of ours once, in order, across pages (others' images, still changing in this
    # shared pixpipe, move to the front as they change: newest first).
    ours = [key for key in everything if key.startswith("pages/")]
    assert [key for key in seen if key.startswith("pages/")] == ours and len(ours) >= 3
    bad = live.http.get(path, headers=AUTH, params={"cursor": "not-ours"})
    assert bad.status_code == 400


def _sse(response: httpx.Response) -> list[dict]:
    events, data = [], None
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            events.append(data)
            data = None
            if events[-1]["state"] in ("done", "failed"):
                break
    return events


def test_events_stream_until_done(live: Live) -> None:
    key = "sse/live one.jpg"
    assert live.upload(key, JPEG).status_code == 201
    with live.http.stream("GET", f"/v1/images/{quote(key)}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse(response)
    assert events[-1]["state"] == "done"
    assert events[-1]["variants"]["m"]["width"] == 640
    # Already done: the stream says so at once and ends.
    with live.http.stream("GET", f"/v1/images/{quote(key)}/events") as response:
        assert [e["state"] for e in _sse(response)] == ["done"]


def test_events_stream_ends_on_failure(live: Live) -> None:
    key = "sse/broken.jpg"
    assert live.upload(key, images.truncated(JPEG)).status_code == 201
    with live.http.stream("GET", f"/v1/images/{quote(key)}/events") as response:
        events = _sse(response)
    assert events[-1]["state"] == "failed"
    assert events[-1]["error"]["kind"] == "corrupt"


def test_events_for_unknown_image_is_404(live: Live) -> None:
    assert live.http.get("/v1/images/never/seen.jpg/events").status_code == 404


def test_all_events_stream_sees_new_uploads(live: Live) -> None:
    with live.http.stream("GET", "/v1/events") as response:
        lines = response.iter_lines()
        assert next(lines) == ": connected"
        assert live.upload("sse/all.jpg", JPEG).status_code == 201
        seen = []
        for line in lines:
            if line.startswith("data: "):
                state = json.loads(line[6:])
                if state["key"] == "sse/all.jpg":
                    seen.append(state["state"])
                    if state["state"] == "done":
                        break
    assert seen[0] == "pending" and seen[-1] == "done"


def test_all_events_stream_starts_now_without_replaying_the_bucket(live: Live) -> None:
    """Connecting replays no image's last state (a KV watch would send every one of them
    first): the first event after ``: connected`` is the new upload's ``pending``, and every
    upload made right after connecting is seen from its first state (the race CI caught:
    ``: connected`` used to go out before the bus subscription existed)."""
    live.processed("sse/before.jpg", JPEG)
    for round_ in range(3):
        key = f"sse/now-{round_}.jpg"
        with live.http.stream("GET", "/v1/events") as response:
            lines = response.iter_lines()
            assert next(lines) == ": connected"
            assert live.upload(key, JPEG).status_code == 201
            # Other images may still be changing (an earlier test's, or an earlier round's):
            # what matters is this upload's first state, and none from before connecting.
            seen = []
            for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["key"] == key:
                        break
        assert "sse/before.jpg" not in {doc["key"] for doc in seen}, "the bucket was replayed"
        assert seen[-1]["state"] == "pending", seen
        assert live.wait(key)["state"] == "done"


# ---- failures and retry -------------------------------------------------------------------


def test_failure_listed_then_retried(live: Live) -> None:
    key = "fail/corrupt photo.jpg"
    assert live.upload(key, images.truncated(JPEG)).status_code == 201
    assert live.wait(key)["state"] == "failed"
    listed = {f["key"]: f for f in live.http.get("/v1/failures", headers=AUTH).json()}
    assert listed[key]["kind"] == "corrupt" and listed[key]["message"]
    # Quarantined originals are never served.
    assert live.http.get(f"/images/original/{quote(key)}").status_code == 404
    response = live.http.post(f"/v1/failures/{quote(key)}/retry", headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json() == {"key": key, "state": "pending"}
    assert live.wait(key)["state"] == "failed"  # still corrupt: fails again, nothing lost


def test_retry_of_an_image_that_did_not_fail_is_409(live: Live) -> None:
    live.processed("fail/fine.jpg", JPEG)
    assert live.http.post("/v1/failures/fail/fine.jpg/retry", headers=AUTH).status_code == 409
    assert live.http.post("/v1/failures/fail/unknown.jpg/retry", headers=AUTH).status_code == 409


# ---- invoke -------------------------------------------------------------------------------


def test_invoke_resizes_now(live: Live) -> None:
    live.processed("inv/photo.jpg", JPEG)
    response = live.http.post("/v1/invoke", json={"key": "inv/photo.jpg", "maxDimension": 100},
                              headers=AUTH)  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resultKey"] == "max100/inv/photo.jpg"
    assert (body["width"], body["height"]) == (100, 62)
    served = live.http.get(body["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert images.decoded(served.content).width == 100


@pytest.mark.parametrize(("payload", "status"), [
    ({"key": "inv/none.jpg", "maxDimension": 100}, 404),
    ({"key": "../x.jpg", "maxDimension": 100}, 400),
    ({"key": "inv/photo.jpg", "maxDimension": 0}, 422),
    ({"key": "inv/photo.jpg", "maxDimension": "big"}, 422),
    ({"key": "inv/photo.jpg"}, 422),
])  # fmt: skip
def test_invoke_input_checks(live: Live, payload: dict, status: int) -> None:
    response = live.http.post("/v1/invoke", json=payload, headers=AUTH)
    assert response.status_code == status, response.text


# ---- bucket notifications, health, metrics ------------------------------------------------


def test_s3_notification_endpoint(live: Live) -> None:
    live.processed("s3n/a b.jpg", JPEG)
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "s3n/a+b.jpg", "size": 1}},
    }
    response = live.http.post("/v1/events/s3", json={"Records": [record]}, headers=AUTH)
    assert response.status_code == 202 and response.json() == {"accepted": ["s3n/a b.jpg"]}
    bad = live.http.post("/v1/events/s3", content=b'{"Records": [{"eventName": '
                         b'"ObjectCreated:Put", "s3": {}}]}', headers=AUTH)  # fmt: skip
    assert bad.status_code == 400
    evil = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "..%2Fx", "size": 1}}}
    assert live.http.post("/v1/events/s3", json={"Records": [evil]},
                          headers=AUTH).status_code == 400  # fmt: skip


def test_health_and_readiness(live: Live) -> None:
    assert live.http.get("/healthz").json() == {"status": "ok"}
    ready = live.http.get("/readyz").json()
    assert (ready["status"], ready["problems"]) == ("ok", [])
    bus = ready["bus"]  # one node, one copy asked for: it has it
    assert bus["ok"] and bus["connected"] and bus["stream"] == {
        "leader": bus["node"], "replicas": 1, "current": 1, "ok": True
    }
    assert bus["url"].startswith("nats://127.0.0.1:") and "@" not in bus["url"]


def test_metrics(live: Live) -> None:
    live.processed("metrics/a.jpg", JPEG)
    text = live.http.get("/metrics").text
    for name in (
        'pixpipe_uploads_total{via="api"}', "pixpipe_images_processed_total",
        'pixpipe_images_failed_total{kind="corrupt"}', "pixpipe_processing_seconds_bucket",
        'pixpipe_consumer_pending{consumer="variants"}', "pixpipe_transform_cache_hits_total",
    ):  # fmt: skip
        assert name in text, name
    processed = _value(text, "pixpipe_images_processed_total")
    assert processed >= 1 and _value(text, "pixpipe_processing_seconds_count") >= 1


def _value(text: str, name: str) -> float:
    lines = text.splitlines()
    return next(float(line.split()[-1]) for line in lines if line.startswith(name + " "))


def test_openapi_has_every_endpoint_with_examples(live: Live) -> None:
    spec = live.http.get("/openapi.json").json()
    for path in ("/v1/images", "/v1/uploads", "/v1/images/{key}", "/v1/images/{key}/events",
                 "/v1/invoke", "/v1/failures", "/v1/failures/{key}/retry",
                 "/images/original/{key}", "/images/{variant}/{rest}",
                 "/t/{signature}/{path}", "/metrics", "/healthz", "/readyz"):  # fmt: skip
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert schemas["InvokeRequest"]["examples"][0] == {"key": "users/42/IMG 0001.jpg",
                                                       "maxDimension": 800}  # fmt: skip
    assert "examples" in schemas["Uploaded"] and "examples" in schemas["ImageState"]


# ---- readiness, and the API key `pixpipe up` makes ----------------------------------------


class _Unreachable:
    url = "s3://gone/originals"

    async def head(self, key: str) -> None:
        raise PixpipeError(Kind.TRANSIENT, "head s3://gone/originals/_readyz: connection refused")


class _Reachable:
    url = "file:///data/variants"

    async def head(self, key: str) -> None:
        return None


async def test_readyz_names_what_is_unreachable() -> None:
    rt = SimpleNamespace(nc=SimpleNamespace(is_connected=False),
                         stores=[_Reachable(), _Unreachable()])  # fmt: skip
    response = await _readiness(rt)  # type: ignore[arg-type]
    assert response.status_code == 503
    body = json.loads(bytes(response.body))
    assert body["status"] == "unavailable"
    assert body["problems"][0] == "bus not connected"
    assert body["problems"][1].startswith("s3://gone/originals: ") and len(body["problems"]) == 2


def test_api_key_is_made_once_and_kept_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert api_keys(settings) == []  # nothing made without `create`
    key = api_keys(settings, create=True)
    kept = tmp_path / "api-key"
    assert key == [kept.read_text().strip()] and len(key[0]) >= 40
    assert kept.stat().st_mode & 0o777 == 0o600
    assert api_keys(settings, create=True) == key  # the same key on the next start
    assert api_keys(Settings(data_dir=tmp_path, api={"keys": ["mine"]}), create=True) == ["mine"]


def test_pixpipe_up_prints_the_key_it_keeps(tmp_path: Path) -> None:
    """`pixpipe up` on a fresh data dir: makes a key, keeps it, prints it, and it works."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXPIPE_")}
    command = [sys.executable, "-m", "pixpipe", "up", "--data-dir", str(tmp_path / "data"),
               "--port", str(port), "--workers", "1"]  # fmt: skip
    with subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                          stdout=subprocess.DEVNULL) as proc:  # fmt: skip
        try:
            printed = _printed_key(proc)
            kept = (tmp_path / "data" / "api-key").read_text().strip()
            assert printed == kept
            _wait_ready(f"http://127.0.0.1:{port}")
            url = f"http://127.0.0.1:{port}/v1/images?key=up.jpg"
            assert httpx.post(url, content=JPEG, timeout=30).status_code == 401
            ok = httpx.post(url, content=JPEG, headers={"Authorization": f"Bearer {kept}"},
                            timeout=30)  # fmt: skip
            assert ok.status_code == 201, ok.text
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    # The next start keeps the key out of its output: the file has it.
    with subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                          stdout=subprocess.DEVNULL) as proc:  # fmt: skip
        try:
            assert proc.stderr is not None
            lines = []
            for line in proc.stderr:
                lines.append(line)
                if line.startswith("try:"):
                    break
            assert any("API key: in" in line for line in lines), lines
            assert not any(kept in line for line in lines), "the key was printed again"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


_MAKE_SECRET = """
import sys, time
from pathlib import Path
from pixpipe.private import kept_secret
start = float(sys.argv[2])
while time.time() < start:
    pass
print(kept_secret(Path(sys.argv[1]))[0])
"""


def test_two_processes_making_the_secret_at_once_agree(tmp_path: Path) -> None:
    for n in range(10):
        path = tmp_path / f"round-{n}" / "signing-secret"
        start = str(time.time() + 1.0)  # both released at the same moment
        procs = [subprocess.Popen([sys.executable, "-c", _MAKE_SECRET, str(path), start],
                                  stdout=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
        made = {proc.communicate(timeout=60)[0].strip() for proc in procs}
        assert made == {path.read_text().strip()}, f"round {n}: {made}"
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["signing-secret"]  # no leftovers


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in 60 s")


def _printed_key(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        if "API key:" in line:
            return line.split("API key:", 1)[1].split()[0]
    raise AssertionError(f"pixpipe up exited ({proc.wait()}) without printing a key")


async def test_metrics_read_the_consumers_at_most_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``/metrics`` is public: scraping it in a loop costs the bus one round per period."""
    from pixpipe.http import metrics as metrics_module

    asked: list[str] = []

    class Bus:  # only what refresh reads: how often it asks
        async def consumer_info(self, stream: str, name: str, timeout: float) -> Any:
            asked.append(name)
            return SimpleNamespace(num_pending=3, num_ack_pending=1)

    collected = metrics_module.Metrics()
    rt = SimpleNamespace(js=Bus())
    clock = [1000.0]
    monkeypatch.setattr(metrics_module.time, "monotonic", lambda: clock[0])
    await collected.refresh(rt)  # type: ignore[arg-type]
    first = len(asked)
    assert first == len(metrics_module.CONSUMERS)
    clock[0] += metrics_module.REFRESH_S / 2
    await collected.refresh(rt)  # type: ignore[arg-type]
    assert len(asked) == first  # within the period: the values already read
    clock[0] += metrics_module.REFRESH_S
    await collected.refresh(rt)  # type: ignore[arg-type]
    assert len(asked) == 2 * first


def test_an_idle_connection_outlives_the_clients_own_keep_alive(live: Live) -> None:
    """A server that closes idle connections when a client (httpx: 5 s) or a load balancer
    (an ALB: 60 s) may reuse them makes that client's next request fail: it keeps them 75 s."""
    import http.client
    from urllib.parse import urlsplit

    conn = http.client.HTTPConnection(urlsplit(live.url).netloc, timeout=10)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"status":"ok"}'
        first = conn.sock
        time.sleep(6)  # past httpx's keep-alive expiry, and uvicorn's default
        conn.request("GET", "/healthz")  # on the same connection (RemoteDisconnected if closed)
        assert conn.getresponse().read() == b'{"status":"ok"}'
        assert conn.sock is first
    finally:
        conn.close()
