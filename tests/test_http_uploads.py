"""Uploads under their limits (streamed, refused as soon as they cross it, chunked or not),
presigned uploads: pixpipe's own signed PUT on local stores (and every way to misuse it: a
token used twice, bytes of another type), and S3's own presigned POST on S3 stores (moto)."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest

from pixpipe.bus import EmbeddedServer
from tests import images
from tests.conftest_services import MotoS3
from tests.test_http_harness import (
    API_KEY,
    AUTH,
    MAX_BYTES,
    Live,
    live_pixpipe,
    running,
    settings_for,
)  # fmt: skip

# One worker per module under xdist: the module shares one live pixpipe.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("http-uploads")]
JPEG = images.jpeg(images.photo(400, 300))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory) as pixpipe:
        yield pixpipe


def presign(live: Live, key: str, data: bytes = JPEG, **extra: Any) -> httpx.Response:
    body = {"key": key, "content_type": "image/jpeg", "content_length": len(data), **extra}
    return live.http.post("/v1/uploads", json=body, headers=AUTH)


def put(url: str, data: bytes, content_type: str = "image/jpeg") -> httpx.Response:
    return httpx.put(url, content=data, headers={"Content-Type": content_type}, timeout=30)


def test_local_presigned_upload(live: Live) -> None:
    response = presign(live, "pre/IMG 1.jpg")
    assert response.status_code == 200, response.text
    grant = response.json()
    assert grant["method"] == "PUT" and grant["headers"] == {"Content-Type": "image/jpeg"}
    assert grant["url"].startswith(f"{live.url}/v1/uploads/pre/IMG%201.jpg?")
    uploaded = put(grant["url"], JPEG)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["key"] == "pre/IMG 1.jpg"
    assert live.wait("pre/IMG 1.jpg")["state"] == "done"
    assert 'pixpipe_uploads_total{via="presigned"} 1.0' in live.http.get("/metrics").text


def _with_query(url: str, **changes: Any) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_tampered_urls_are_403(live: Live) -> None:
    url = presign(live, "pre/tamper.jpg").json()["url"]
    for bad in (
        _with_query(url, token="x" * 43), _with_query(url, length=len(JPEG) + 1),
        _with_query(url, type="image/png"), _with_query(url, expires=int(time.time()) + 9999),
        url.replace("/pre/tamper.jpg", "/pre/other.jpg"),
    ):  # fmt: skip
        assert put(bad, JPEG).status_code == 403, bad
    assert live.state("pre/tamper.jpg") is None


def test_expired_url_is_403(live: Live) -> None:
    url = presign(live, "pre/expired.jpg", expires_in=1).json()["url"]
    time.sleep(2.1)
    response = put(url, JPEG)
    assert response.status_code == 403 and "expired" in response.json()["detail"]


@pytest.mark.parametrize("data", [JPEG[:-1], JPEG + b"\0"])
def test_wrong_length_is_400(live: Live, data: bytes) -> None:
    url = presign(live, "pre/length.jpg").json()["url"]
    response = put(url, data)
    assert response.status_code == 400 and "exactly" in response.json()["detail"]


def test_wrong_content_type_is_400(live: Live) -> None:
    url = presign(live, "pre/type.jpg").json()["url"]
    assert put(url, JPEG, "image/png").status_code == 400


def test_presigned_non_image_is_415(live: Live) -> None:
    data = b"not an image at all"
    url = presign(live, "pre/text.jpg", data).json()["url"]
    assert put(url, data).status_code == 415


@pytest.mark.parametrize(("body", "status"), [
    ({"key": "a/../b.jpg", "content_type": "image/jpeg", "content_length": 10}, 400),
    ({"key": "a.txt", "content_type": "text/plain", "content_length": 10}, 415),
    ({"key": "a.jpg", "content_type": "image/jpeg", "content_length": MAX_BYTES + 1}, 413),
    ({"key": "a.jpg", "content_type": "image/jpeg", "content_length": 0}, 422),
    ({"key": "a.jpg", "content_type": "image/jpeg", "content_length": 10, "expires_in": 0}, 422),
    ({"key": "a.jpg", "content_type": "image/jpeg"}, 422),
])  # fmt: skip
def test_presign_input_checks(live: Live, body: dict, status: int) -> None:
    response = live.http.post("/v1/uploads", json=body, headers=AUTH)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("query", ["", "expires=1&length=1&type=image/jpeg"])
def test_put_without_a_token_is_rejected(live: Live, query: str) -> None:
    response = httpx.put(f"{live.url}/v1/uploads/pre/x.jpg?{query}", content=JPEG)
    assert response.status_code == 422


def test_s3_store_hands_out_a_presigned_post_bound_to_length_and_type(
    aws_env: MotoS3, tmp_path_factory: pytest.TempPathFactory
) -> None:
    prefix = f"presign-{uuid.uuid4().hex[:8]}"
    with EmbeddedServer(tmp_path_factory.mktemp("nats")) as server:
        settings = settings_for(
            tmp_path_factory.mktemp("data"), server.url,
            stores={"originals": f"s3://{aws_env.bucket}/{prefix}"},
        )  # fmt: skip
        with running(settings) as live:
            grant = presign(live, "users/7/IMG 2.jpg").json()
            assert grant["method"] == "POST"
            assert grant["url"] == f"{aws_env.endpoint}/{aws_env.bucket}"
            fields = grant["fields"]
            assert fields["key"] == f"{prefix}/users/7/IMG 2.jpg"
            assert fields["Content-Type"] == "image/jpeg"
            # The policy S3 checks: this exact length, this type (moto stores without checking
            # it; AWS, MinIO and Ceph refuse a body outside the range with EntityTooLarge).
            policy = json.loads(base64.b64decode(fields["policy"]))
            conditions = policy["conditions"]
            assert ["content-length-range", len(JPEG), len(JPEG)] in conditions
            assert {"Content-Type": "image/jpeg"} in conditions
            assert "x-amz-signature" in fields
            sent = httpx.post(grant["url"], data=fields, files={"file": ("f", JPEG)}, timeout=30)
            assert sent.status_code in (200, 201, 204), sent.text
            head = aws_env.client().head_object(Bucket=aws_env.bucket,
                                                Key=f"{prefix}/users/7/IMG 2.jpg")  # fmt: skip
            assert (head["ContentLength"], head["ContentType"]) == (len(JPEG), "image/jpeg")
            # The bucket's notification announces it (here: posted by hand, as MinIO would): it
            # names the bucket and the full object key, the store's prefix included.
            record = {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": aws_env.bucket},
                    "object": {"key": f"{prefix}/users/7/IMG+2.jpg", "size": len(JPEG)},
                },
            }
            notified = live.http.post("/v1/events/s3", json={"Records": [record]}, headers=AUTH)
            assert notified.status_code == 202
            assert live.wait("users/7/IMG 2.jpg")["state"] == "done"


# ---- limits while streaming -------------------------------------------------------------------


def _chunked_upload(live: Live, head: bytes, body_start: bytes, size: int) -> bytes:
    """Send a chunked request's headers and its first ``size`` bytes, then hold the rest back
    (the connection stays open): what the server answers is decided on what it read so far."""
    host, port = urlsplit(live.url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        sent, chunk = 0, body_start + b"\0" * (256 * 1024 - len(body_start))
        while sent < size:
            piece = chunk if sent == 0 else b"\0" * len(chunk)
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        return sock.recv(65536)  # the body's end is never sent: only a refusal can come back


def test_a_chunked_upload_over_the_limit_is_refused_before_its_end(live: Live) -> None:
    key = "stream/over.jpg"
    head = (f"POST /v1/images?key={quote(key)} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {API_KEY}\r\n"
            "Content-Type: image/jpeg\r\n").encode()  # fmt: skip
    answer = _chunked_upload(live, head, JPEG[:4096], MAX_BYTES + 300_000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert live.state(key) is None
    kept = list((live.settings.data_dir / "originals").rglob("over.jpg*"))
    assert kept == [], "a part of the refused upload was kept"


def test_a_chunked_multipart_upload_over_the_limit_is_refused_before_its_end(live: Live) -> None:
    key = "stream/multi.jpg"
    boundary = "pixpipe-test-boundary"
    head = (f"POST /v1/images?key={quote(key)} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {API_KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n").encode()  # fmt: skip
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\""
            "\r\nContent-Type: image/jpeg\r\n\r\n").encode()  # fmt: skip
    answer = _chunked_upload(live, head, part + JPEG[:4096], MAX_BYTES + 1_000_000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert live.state(key) is None


def test_a_multipart_upload_streams_its_file_field_into_the_store(live: Live) -> None:
    files = {"note": (None, "a small field first"), "file": ("x.jpg", JPEG, "image/jpeg")}
    response = live.http.post("/v1/images", params={"key": "stream/form.jpg"}, files=files,
                              headers=AUTH)  # fmt: skip
    assert response.status_code == 201, response.text
    assert live.http.get("/images/original/stream/form.jpg").content == JPEG
    no_file = live.http.post("/v1/images", params={"key": "stream/none.jpg"},
                             files={"other": ("x.jpg", JPEG)}, headers=AUTH)  # fmt: skip
    assert no_file.status_code == 400 and "'file'" in no_file.text


def test_a_local_presigned_url_is_good_for_one_upload(live: Live) -> None:
    url = presign(live, "pre/once.jpg").json()["url"]
    assert put(url, JPEG).status_code == 201
    again = put(url, JPEG)
    assert again.status_code == 403 and "used already" in again.text


def test_a_local_presigned_url_takes_bytes_of_its_type_only(live: Live) -> None:
    png = images.png(images.photo(40, 30))
    body = {"key": "pre/typed.png", "content_type": "image/png", "content_length": len(JPEG)}
    url = live.http.post("/v1/uploads", json=body, headers=AUTH).json()["url"]
    refused = put(url, JPEG, "image/png")  # a JPEG sent as the PNG the URL was made for
    assert refused.status_code == 415 and "png" in refused.text
    assert live.state("pre/typed.png") is None
    assert len(png) != len(JPEG)  # (the length binding alone would not have caught it)
