"""Live state as Server-Sent Events, from a JetStream KV watch on ``pixpipe-images``.

- ``GET /v1/images/{key}/events``: the image's state now, then every change, until ``done`` or
  ``failed`` (then the stream ends).
- ``GET /v1/events``: every image's changes from now on (the dashboard's one connection; a
  browser allows only a few per host, so not one per image). Its first line, ``: connected``,
  comes once the bus delivers every change after it: a client that uploads on seeing it misses
  none of the upload's states. It reads the bucket's stream from its next message on, so
  connecting costs the same whatever the number of images (a KV watch would first replay the
  last state of every one of them).

Each event is ``event: state`` with the same JSON as ``GET /v1/images/{key}``; a comment line
every ``KEEPALIVE`` seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from ..bus import kv_changes, kv_name
from ..jobs.state import FINAL, ImageState
from ..pipeline.runtime import Runtime
from ..storage import check_original_key
from .api import base_url, public_state
from .models import Problem

router = APIRouter(tags=["images"])
KEEPALIVE = 15.0
_SSE = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"example": 'event: state\ndata: {"key": "a.jpg", '
                                                       '"state": "done", "variants": {}}\n\n'}}},
    400: {"model": Problem}, 404: {"model": Problem},
}  # fmt: skip


def _event(doc: ImageState, base: str, revision: int | None) -> str:
    data = json.dumps(public_state(doc, base), separators=(",", ":"))
    return f"event: state\nid: {revision or 0}\ndata: {data}\n\n"


async def _watch(rt: Runtime, pattern: str) -> AsyncIterator[tuple[ImageState, int] | None]:
    """A state document now and as it changes (``None`` on each idle ``KEEPALIVE``)."""
    watcher = await rt.states.kv.watch(pattern)
    try:
        while True:
            try:
                entry = await watcher.updates(timeout=KEEPALIVE)  # type: ignore[no-untyped-call]
            except nats.errors.TimeoutError:
                yield None
                continue
            if entry is not None and entry.value:  # None: the marker after the current value
                yield ImageState.from_json(entry.value), entry.revision
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]


async def _from_now(rt: Runtime) -> AsyncIterator[tuple[ImageState, int] | None]:
    """Every state written after the first ``None`` (which comes once the ordered consumer
    exists on the server: from then on nothing is missed), then ``None`` on each idle
    ``KEEPALIVE``. Deletions and purges (no body) are left out."""
    sub = await kv_changes(rt.states.kv)
    try:
        yield None
        while True:
            try:
                msg = await sub.next_msg(timeout=KEEPALIVE)
            except nats.errors.TimeoutError:
                yield None
                continue
            if msg.data:
                yield ImageState.from_json(msg.data), msg.metadata.sequence.stream
    finally:
        await sub.unsubscribe()


class Streams:
    """Open event streams, at most ``[api] max_event_streams`` at once: each holds a consumer
    on the bus, and a client must not be able to open them without end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def counted(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """``stream``, counted while it is open; 503 (``Retry-After``) when at the limit."""
        if self.open >= self.limit:
            raise HTTPException(503, f"{self.limit} event streams are open; retry shortly",
                                headers={"Retry-After": "5"})  # fmt: skip
        self.open += 1

        async def counted() -> AsyncIterator[str]:
            async for chunk in stream:
                yield chunk

        body = counted()
        # Released when the body is gone, whether it ran to its end, was cut off by the
        # client, or never started (a client gone before the first byte): no count leaks.
        weakref.finalize(body, self._release)
        return body

    def _release(self) -> None:
        self.open -= 1


@router.get("/v1/images/{key:path}/events", response_class=StreamingResponse, responses=_RESPONSES)
async def image_events(request: Request, key: str) -> StreamingResponse:
    """The image's state now and at every change, until ``done`` or ``failed``."""
    rt: Runtime = request.app.state.rt
    check_original_key(key)
    if await rt.states.get(key) is None and not await rt.stores.originals.exists(key):
        raise HTTPException(404, f"no image {key!r}")
    base = base_url(request)

    async def stream() -> AsyncIterator[str]:
        async for item in _watch(rt, kv_name(key)):
            if item is None:
                yield ": keepalive\n\n"
                continue
            doc, revision = item
            yield _event(doc, base, revision)
            if doc.state in FINAL:
                return

    counted = request.app.state.streams.counted(stream())
    return StreamingResponse(counted, media_type="text/event-stream", headers=_SSE)


@router.get("/v1/events", response_class=StreamingResponse, responses=_RESPONSES)
async def all_events(request: Request) -> StreamingResponse:
    """Every image's state changes from now on (until the client goes away)."""
    rt: Runtime = request.app.state.rt
    base = base_url(request)

    async def stream() -> AsyncIterator[str]:
        async with contextlib.aclosing(_from_now(rt)) as changes:
            await anext(changes)  # the consumer is there: every change from here on comes
            yield ": connected\n\n"
            async for item in changes:
                yield ": keepalive\n\n" if item is None else _event(item[0], base, item[1])

    counted = request.app.state.streams.counted(stream())
    return StreamingResponse(counted, media_type="text/event-stream", headers=_SSE)


__all__ = ["Streams", "router"]
