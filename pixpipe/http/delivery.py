"""Delivery, as a CDN origin should serve: streamed from any store, strong ETag, 304,
single byte ranges (206/416), immutable caching for variants. The backup, quarantine and
cache stores have no route here at all (transform results are served by ``transform.py``).

Every response carries ``X-Content-Type-Options: nosniff`` and a sandboxing CSP, so an SVG or
PDF original cannot run script on the API's origin."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..errors import Kind, PixpipeError
from ..imaging.sniff import sniff
from ..jobs.resize import LEGACY_PREFIX
from ..pipeline.runtime import Runtime
from ..recipe import strip_extension
from ..storage import Store, check_original_key

router = APIRouter(tags=["delivery"])
IMMUTABLE = "public, max-age=31536000, immutable"  # only for a versioned URL (``?v=``)
REVALIDATE = "public, no-cache"  # originals may be replaced under the same key
# A variant's plain URL keeps its name when the original is replaced: caches may keep it a
# minute, then revalidate (ETag, 304). The versioned URL the state, events and webhooks give
# (``?v={version}``, ``Variant.version``) changes with the original and the spec, so it is
# immutable. As with Cloudinary's ``/v{n}/`` and imgproxy's ``cb``, the version is a cache key:
# any value serves the variant as it is now.
VARIANT = "public, max-age=60"
NO_STORE = "no-store"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_LEGACY_RESIZE = re.compile(r"^max-\d+$")  # the Lambda's old direct-resize keys
SAFE = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; "
        "img-src 'self' data:; style-src 'unsafe-inline'; sandbox"}  # fmt: skip
MEDIA_TYPES = {
    "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif",
    "tiff": "image/tiff", "heif": "image/heic", "avif": "image/avif", "svg": "image/svg+xml",
    "pdf": "application/pdf",
}  # fmt: skip


@router.get("/images/original/{key:path}")
async def original(
    request: Request, key: str, if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header()] = None,
) -> Response:  # fmt: skip
    store: Store = request.app.state.rt.stores.originals
    key = check_original_key(key)
    media = await _original_type(store, key)
    return await serve(store, key, REVALIDATE, if_none_match, range, content_type=media)


@router.get("/images/{variant}/{rest:path}")
async def variant(
    request: Request, variant: str, rest: str, fallback: Literal["original"] | None = None,
    v: Annotated[str | None, Query(description="The variant's version: immutable URL.")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header()] = None,
) -> Response:  # fmt: skip
    stores = request.app.state.rt.stores
    key = check_original_key(f"{variant}/{rest}")
    if _LEGACY_RESIZE.match(variant) and await stores.variants.head(key) is None:
        key = f"{variant.replace(LEGACY_PREFIX, 'max', 1)}/{rest}"  # see jobs/resize.py
    if fallback == "original" and await stores.variants.head(key) is None:
        # Not made yet: the original meanwhile, never cached as if it were the variant.
        source = await _original_of(request.app.state.rt, rest)
        if source is not None:
            media = await _original_type(stores.originals, source)
            return await serve(stores.originals, source, NO_STORE, None, range, content_type=media)
    cache = IMMUTABLE if v else VARIANT
    return await serve(stores.variants, key, cache, if_none_match, range)


# The extensions an original's key may have (and their capitals, as phones write them).
_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "tif", "tiff", "heic", "heif", "avif",
               "svg", "pdf", "ai")  # fmt: skip


async def _original_of(rt: Runtime, rest: str) -> str | None:
    """The original a variant key was made from: same path, one of the image extensions (or
    none), found by its image state; never by listing a folder (a listing is one request per
    thousand keys, which a client could make us do at will)."""
    stem = strip_extension(rest)
    names = [stem, *(f"{stem}.{e}" for ext in _EXTENSIONS for e in (ext, ext.upper()))]
    states = await asyncio.gather(*(rt.states.get(name) for name in names))
    for name, state in zip(names, states, strict=True):
        if state is not None and await rt.stores.originals.head(name) is not None:
            return name
    return None


def _quoted(etag: str | None) -> str:
    return f'"{(etag or "").strip(chr(34))}"'


async def serve(
    store: Store, key: str, cache: str, if_none_match: str | None, range_header: str | None,
    *, content_type: str | None = None, extra: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    """Stream ``key`` with validators and ranges."""
    meta = await store.head(key)
    if meta is None:
        raise HTTPException(404, f"no object {key!r}")
    etag = _quoted(meta.etag)
    headers = {"ETag": etag, "Cache-Control": cache, "Accept-Ranges": "bytes", **SAFE,
               **(extra or {})}  # fmt: skip
    if if_none_match and _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    media = content_type or meta.content_type or await _sniffed(store, key)
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
    return StreamingResponse(download.chunks, status, headers, media_type=media)


def serve_bytes(
    data: bytes, etag: str, cache: str, if_none_match: str | None, range_header: str | None,
    *, content_type: str, extra: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    """``serve`` for an object already in memory: the same validators and ranges."""
    etag = _quoted(etag)
    headers = {"ETag": etag, "Cache-Control": cache, "Accept-Ranges": "bytes", **SAFE,
               **(extra or {})}  # fmt: skip
    if if_none_match and _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    start, end = _byte_range(range_header, len(data))
    if range_header and start is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"  # type: ignore[operator]
        return Response(data[start:end], 206, headers, media_type=content_type)
    return Response(data, 200, headers, media_type=content_type)


def _matches(if_none_match: str, etag: str) -> bool:
    """``If-None-Match``: ``*`` or a list of (possibly weak) tags; weak comparison (RFC 9110)."""
    if if_none_match.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags


async def _original_type(store: Store, key: str) -> str | None:
    """A local store keeps no Content-Type and a name can lie: read originals' from the bytes."""
    return None if store.has_attributes else await _sniffed(store, key)


async def _sniffed(store: Store, key: str) -> str:
    """The media type of an object stored without one (local stores, odd extensions)."""
    try:
        return MEDIA_TYPES[sniff(await store.get_range(key, 0, 4096))]
    except PixpipeError:
        return "application/octet-stream"


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

__all__ = [
    "IMMUTABLE",
    "MEDIA_TYPES",
    "NO_STORE",
    "REVALIDATE",
    "SAFE",
    "VARIANT",
    "original",
    "router",
    "serve",
    "serve_bytes",
    "variant",
]
