"""Delivery, as a CDN origin should serve: streamed from any store, strong ETag, 304,
single byte ranges (206/416), immutable caching for variants. The backup and quarantine
stores have no route at all."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from ..errors import Kind, PixpipeError
from ..recipe import strip_extension
from ..stores import Store, validate_key

router = APIRouter()
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"  # originals may be replaced under the same key
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get("/images/original/{key:path}")
async def original(
    request: Request, key: str, if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header()] = None,
) -> Response:  # fmt: skip
    store = request.app.state.rt.stores.originals
    return await serve(store, validate_key(key), REVALIDATE, if_none_match, range)


@router.get("/images/{variant}/{rest:path}")
async def variant(
    request: Request, variant: str, rest: str, fallback: str | None = None,
    if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header()] = None,
) -> Response:  # fmt: skip
    stores = request.app.state.rt.stores
    key = validate_key(f"{variant}/{rest}")
    if await stores.variants.head(key) is None and fallback == "original":
        # Not made yet: the original meanwhile, never cached as if it were the variant.
        async for page in stores.originals.list(f"{strip_extension(rest)}.", page_size=10):
            for meta in page:
                if strip_extension(meta.key) == strip_extension(rest):
                    return await serve(stores.originals, meta.key, "no-store", None, range)
    return await serve(stores.variants, key, IMMUTABLE, if_none_match, range)


def _quoted(etag: str | None) -> str:
    return f'"{(etag or "").strip(chr(34))}"'


async def serve(
    store: Store, key: str, cache: str, if_none_match: str | None, range_header: str | None
) -> Response:
    """Stream ``key`` with validators and ranges."""
    meta = await store.head(key)
    if meta is None:
        raise HTTPException(404, f"no object {key!r}")
    etag = _quoted(meta.etag)
    headers = {"ETag": etag, "Cache-Control": cache, "Accept-Ranges": "bytes"}
    if if_none_match and (if_none_match.strip() == "*" or etag in if_none_match.split(", ")):
        return Response(status_code=304, headers=headers)
    start, end = _byte_range(range_header, meta.size)
    try:
        download = await store.open(key, start=start, end=end)
    except PixpipeError as exc:
        if exc.kind is Kind.MISSING:
            raise HTTPException(404, f"no object {key!r}") from None
        raise
    status = 200
    lo, hi = download.range
    headers["Content-Length"] = str(hi - lo)
    if range_header and start is not None:
        status = 206
        headers["Content-Range"] = f"bytes {lo}-{hi - 1}/{meta.size}"
    media = meta.content_type or "application/octet-stream"
    return StreamingResponse(download.chunks, status, headers, media_type=media)


def _byte_range(header: str | None, size: int) -> tuple[int | None, int | None]:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → ``[start, end)``; 416 when unsatisfiable."""
    if not header:
        return None, None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None, None  # multiple or odd ranges: serve the whole object (allowed by RFC 9110)
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(0, size - int(last)), size
    if start >= size or start >= end:
        raise HTTPException(416, headers={"Content-Range": f"bytes */{size}"})
    return start, end
