"""``Client``: pixpipe's API from blocking code (a Django view, a script, a Celery task)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TypeVar

import httpx

from ._bodies import Data, Progress, opened
from ._calls import Call, Calls
from ._events import RETRIED, Waiting
from .models import Batch, Grant, ImageState, Srcset, Uploaded

T = TypeVar("T")


class Client:
    """pixpipe at ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    ``api_key`` is needed to upload and to open batches (``pixpipe up`` prints one; it is in
    ``{data_dir}/api-key``); reading state, events and batches needs none. ``signing_secret``
    (the server's ``api.signing_secret``) is needed only by ``sign``. ``timeout`` bounds each
    request (connect, each read, each write), in seconds; ``wait`` has its own. ``transport``
    is handed to ``httpx.Client`` (tests, proxies, retries on connect).

    Use it as a context manager, or call ``close()``: it holds a connection pool. Non-2xx
    answers raise ``PixpipeClientError`` (``status``, ``kind``, ``detail``, ``retry_after``);
    network failures raise httpx's own ``httpx.TransportError``.
    """

    def __init__(
        self, base_url: str, api_key: str | None = None, signing_secret: str | None = None,
        timeout: float = 30.0, transport: httpx.BaseTransport | None = None,
    ) -> None:  # fmt: skip
        self._calls = Calls(base_url, api_key, signing_secret)
        self._timeout = timeout
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def _send(self, call: Call[T]) -> T:
        return call.read(self._http.send(call.request))

    def upload(
        self, key: str, data: Data, *, content_type: str | None = None, batch: str | None = None,
        progress: Progress | None = None,
    ) -> Uploaded:  # fmt: skip
        """Upload an original to ``key`` (``users/42/photo.jpg``) and return at once, the
        image ``pending``: ``wait(key)`` for its variants.

        ``data`` is bytes, a path (``str`` or ``Path``) or a binary file object (read from
        where it is, and left open); paths and files are streamed, never read whole into
        memory. ``content_type`` defaults to a guess from the file name (the server sniffs the
        bytes either way). ``batch`` holds the upload in an open batch (``open_batch``) until
        the batch is complete. ``progress(sent_bytes, total_bytes)`` is called as the body is
        sent, ending with ``sent == total`` (``total`` is ``None`` for a file object that
        cannot seek).

        Raises ``PixpipeClientError``: 400 a bad key, 401 no or a wrong API key, 404/409 an
        unknown or closed batch, 413 past the server's ``limits.max_input_bytes``, 415 not an
        image the server takes, 503 the bus is down (``retry_after``). A file that is an image
        by its first bytes but cannot be decoded is taken, then fails: ``wait`` tells.
        """
        with opened(data, key) as source:
            return self._send(self._calls.upload(key, source, content_type, batch, progress))

    def presign(
        self, key: str, content_type: str, content_length: int, *, expires_in: int = 900
    ) -> Grant:
        """A grant to upload ``content_length`` bytes of ``content_type`` to ``key`` directly
        (``POST /v1/uploads``), valid ``expires_in`` seconds: the store's own presigned POST
        on S3 (the bytes never pass through pixpipe), pixpipe's own single-use URL on local
        stores. Make one in your backend and hand ``grant.to_json()`` to a browser, which
        sends the file with ``/static/upload.js``; ``presigned_upload`` does both here.
        Raises ``PixpipeClientError`` (401, 413 over the limit, 415 a type the server does
        not take)."""
        return self._send(self._calls.presign(key, content_type, content_length, expires_in))

    def presigned_upload(
        self, key: str, data: Data, content_type: str, *, progress: Progress | None = None,
        expires_in: int = 900,
    ) -> Uploaded | None:  # fmt: skip
        """Upload ``data`` the way a browser would: ask for a grant (``presign``), then send
        the bytes where it says, without the API key: a PUT to pixpipe's own URL on local
        stores, a multipart POST (the grant's fields, then the file) to S3.

        ``data`` is bytes, a path or a seekable binary file (the grant binds the exact
        length, so it must be known); ``content_type`` must be an image type the server takes
        (``image/jpeg``, ``image/png``, …) and match the bytes. ``progress(sent, total)``
        counts the data's bytes. Returns what pixpipe took (local stores), or ``None`` when
        the store itself answered (S3: the bucket's notification announces it a moment
        later). Either way ``wait(key)`` then waits for the variants. Raises
        ``PixpipeClientError`` (403 an expired or used grant, 415 bytes of another type).
        """
        with opened(data, key) as source:
            if source.size is None:
                raise ValueError("presigned_upload needs the length: give bytes, a path or a "
                                 "seekable file")  # fmt: skip
            grant = self.presign(key, content_type, source.size, expires_in=expires_in)
            return self._send(self._calls.granted(grant, source, content_type, progress))

    def state(self, key: str) -> ImageState:
        """The image's state now: ``pending``, ``processing``, ``done`` (with ``variants``:
        versioned URL, width, height, bytes, format, version each) or ``failed`` (``error``:
        kind and message); ``placeholder`` (ThumbHash) and ``dominant`` once done. Raises
        ``PixpipeClientError`` 404 for a key never uploaded."""
        return self._send(self._calls.state(key))

    def wait(self, key: str, timeout: float = 60.0) -> ImageState:
        """Wait until the image is ``done`` and return its state, following its Server-Sent
        Events (``GET /v1/images/{key}/events``: no polling).

        Raises ``ProcessingFailed`` (``kind``, ``message``, ``state``) when it ends
        ``failed``, and ``WaitTimeout`` (a ``TimeoutError``; ``state`` the last one seen)
        when ``timeout`` seconds pass first. A key the server does not know yet is asked
        again until then (an S3 upload is announced a moment after it lands), so a key never
        uploaded ends in ``WaitTimeout`` too. Images held in an open batch stay ``pending``
        until the batch is complete.
        """
        waiting = Waiting(self._calls, key, timeout, self._timeout)
        while (state := waiting.outcome()) is None:
            try:
                with contextlib.closing(self._http.send(waiting.request(), stream=True)) as got:
                    if not got.is_success:
                        got.read()
                    if waiting.opened(got):
                        for line in got.iter_lines():
                            if waiting.line(line):
                                break
            except RETRIED:
                pass  # the deadline (``request`` ends the wait) or a cut stream: again
            time.sleep(waiting.pause())
        return state

    def variant_urls(self, key: str) -> dict[str, str]:
        """The made variants' versioned URLs by name (``{"m": "…/images/m/…?v=…"}``), to
        store in your database or put in a page: immutable, and new when the original is
        replaced. Empty until the image is ``done``; 404 (``PixpipeClientError``) for a key
        never uploaded."""
        return self._send(self._calls.variant_urls(key))

    def srcset(
        self, key: str, *, sizes: str = "100vw", widths: list[int] | None = None,
        options: str | Mapping[str, object] = "",
    ) -> Srcset:  # fmt: skip
        """An ``<img>``'s ``src``, ``srcset`` and ``sizes`` (``Srcset.attributes()`` writes
        them out): from the recipe's inside-fit variants once ``done`` (404 before), or with
        ``widths`` (``[320, 640, 1280]``) from signed on-the-fly transforms at those widths,
        any time, with ``options`` besides the width (``"f:auto"`` or ``{"f": "auto"}``)."""
        return self._send(self._calls.srcset(key, sizes, widths, options))

    def open_batch(self, id: str, expected: int, deadline_s: float | None = None) -> Batch:
        """Open a batch (an order): uploads naming it (``upload(..., batch=id)``) are stored
        at once but processed only when all ``expected`` are in, or when ``deadline_s``
        seconds pass (then with what has arrived; ``missing`` counts the rest). Uploading a
        key twice counts once. Opening it again with the same ``expected`` returns it (safe to
        retry). Raises ``PixpipeClientError`` (400 a bad id: 1-128 letters, digits, ``._:-``;
        401; 409 the id is open with another ``expected``)."""
        return self._send(self._calls.open_batch(id, expected, deadline_s))

    def batch(self, id: str) -> Batch:
        """A batch's state: ``open``, ``processing`` or ``done``, with ``received``, ``done``
        and ``failed`` counts (a ``pixpipe.batch.done`` webhook tells when it is done). 404
        (``PixpipeClientError``) for an unknown id."""
        return self._send(self._calls.batch(id))

    def fetch(self, url: str) -> bytes:
        """The bytes at a pixpipe URL: a variant's or the original's (``state``, ``upload``),
        a signed transform (``sign``), or a path on ``base_url`` (``/images/m/…``); read
        whole into memory. Raises ``PixpipeClientError``: 403 a bad signature or an expired
        URL, 404 a variant not made yet, 503 the server's transforms are all busy
        (``retry_after``)."""
        return self._send(self._calls.fetch(url))

    def sign(
        self, options: str | Mapping[str, object], key: str, expires_in: int | None = None
    ) -> str:
        """The full URL of an on-the-fly transform: ``{base_url}/t/{signature}/{options}/{key}``,
        signed with ``signing_secret``; no request is made. ``options`` is
        ``"w:800/h:600/fit:cover/f:auto"`` or ``{"w": 800, "h": 600, "fit": "cover"}`` (the
        names of README's transform options); ``expires_in`` seconds makes the URL stop
        working then (an ``exp:`` option inside the signature). Raises ``ValueError`` for an
        unknown option or a missing secret. The server answers a changed URL with 403."""
        return self._calls.sign(options, key, expires_in)


__all__ = ["Client"]
