"""``AsyncClient``: the same methods as ``Client`` (``sync.py``, whose docstrings say what each
does), awaited: for FastAPI, aiohttp or any asyncio code. Only the sending differs; the
requests and their reading are ``_calls.py``'s, and ``wait``'s decisions ``_events.py``'s."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from types import TracebackType
from typing import TypeVar

import httpx

from ._bodies import Data, Progress, opened
from ._calls import Call, Calls
from ._events import RETRIED, Waiting
from .models import Batch, Grant, ImageState, Srcset, Uploaded
from .sync import Client

T = TypeVar("T")


class AsyncClient:
    """pixpipe at ``base_url``, for asyncio: ``async with AsyncClient(url, api_key) as px:``.
    The parameters are ``Client``'s; ``transport`` is an ``httpx.AsyncBaseTransport``.
    ``progress`` callbacks run in the event loop, between chunks (keep them quick)."""

    def __init__(
        self, base_url: str, api_key: str | None = None, signing_secret: str | None = None,
        timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:  # fmt: skip
        self._calls = Calls(base_url, api_key, signing_secret)
        self._timeout = timeout
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        return call.read(await self._http.send(call.request))

    async def upload(
        self, key: str, data: Data, *, content_type: str | None = None, batch: str | None = None,
        progress: Progress | None = None,
    ) -> Uploaded:  # fmt: skip
        with opened(data, key) as source:
            return await self._send(self._calls.upload(key, source, content_type, batch, progress))

    async def presign(
        self, key: str, content_type: str, content_length: int, *, expires_in: int = 900
    ) -> Grant:
        return await self._send(self._calls.presign(key, content_type, content_length, expires_in))

    async def presigned_upload(
        self, key: str, data: Data, content_type: str, *, progress: Progress | None = None,
        expires_in: int = 900,
    ) -> Uploaded | None:  # fmt: skip
        with opened(data, key) as source:
            if source.size is None:
                raise ValueError("presigned_upload needs the length: give bytes, a path or a "
                                 "seekable file")  # fmt: skip
            grant = await self.presign(key, content_type, source.size, expires_in=expires_in)
            return await self._send(self._calls.granted(grant, source, content_type, progress))

    async def state(self, key: str) -> ImageState:
        return await self._send(self._calls.state(key))

    async def wait(self, key: str, timeout: float = 60.0) -> ImageState:
        waiting = Waiting(self._calls, key, timeout, self._timeout)
        while (state := waiting.outcome()) is None:
            try:
                got = await self._http.send(waiting.request(), stream=True)
                async with contextlib.aclosing(got):
                    if not got.is_success:
                        await got.aread()
                    if waiting.opened(got):
                        async for line in got.aiter_lines():
                            if waiting.line(line):
                                break
            except RETRIED:
                pass  # the deadline (``request`` ends the wait) or a cut stream: again
            await asyncio.sleep(waiting.pause())
        return state

    async def variant_urls(self, key: str) -> dict[str, str]:
        return await self._send(self._calls.variant_urls(key))

    async def srcset(
        self, key: str, *, sizes: str = "100vw", widths: list[int] | None = None,
        options: str | Mapping[str, object] = "",
    ) -> Srcset:  # fmt: skip
        return await self._send(self._calls.srcset(key, sizes, widths, options))

    async def open_batch(self, id: str, expected: int, deadline_s: float | None = None) -> Batch:
        return await self._send(self._calls.open_batch(id, expected, deadline_s))

    async def batch(self, id: str) -> Batch:
        return await self._send(self._calls.batch(id))

    async def fetch(self, url: str) -> bytes:
        return await self._send(self._calls.fetch(url))

    def sign(
        self, options: str | Mapping[str, object], key: str, expires_in: int | None = None
    ) -> str:
        return self._calls.sign(options, key, expires_in)


# One text per method, written once (in ``Client``): what a method does is the same here.
for _name in ("upload", "presign", "presigned_upload", "state", "wait", "variant_urls",
              "srcset", "open_batch", "batch", "fetch", "sign"):  # fmt: skip
    getattr(AsyncClient, _name).__doc__ = getattr(Client, _name).__doc__
del _name

__all__ = ["AsyncClient"]
