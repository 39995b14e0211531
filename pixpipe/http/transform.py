"""On-the-fly transforms: ``GET /t/{signature}/{options}/{key}``.

signature check (403) → options and key (400) → the original's etag → the results in memory
(``hot.py``), then the cache store, both keyed by (key, source etag, resolved variant, output
format), so an overwritten original never serves a stale result → on a miss, one render in the
API's render pool (503 + ``Retry-After`` when every slot is taken; a bad or hostile source is a
422 with its failure kind, never a crash) → the result is kept in the cache store (and in
memory) and served from there afterwards (ETag, 304, Range).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Kind, PixpipeError
from ..imaging.sniff import sniff
from ..pipeline.runtime import Runtime
from ..recipe import EXTENSIONS, Variant
from ..storage import BadKey, Meta, Store, check_original_key
from .delivery import MEDIA_TYPES, REVALIDATE, SAFE, serve, serve_bytes
from .hot import Hot, HotCache
from .metrics import Metrics
from .models import Problem
from .options import HINT_HEADERS, BadOptions, hinted, parse_path, to_variant
from .renders import Busy, Renders
from .signing import verify_path

router = APIRouter(tags=["transforms"])
_FORMATS = {media: fmt for fmt, media in MEDIA_TYPES.items()}
_BY_EXTENSION = {ext: fmt for fmt, ext in EXTENSIONS.items()}
_STATUS = {Kind.MISSING: 404, Kind.TRANSIENT: 503}  # the others (bad source): 422
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/*": {}}, "description": "The transformed image."},
    **{code: {"model": Problem} for code in (400, 403, 404, 422, 503)},
}


def cache_key(key: str, etag: str | None, variant: Variant, fmt: str) -> str:
    """Where a result lives in the cache store: ``{key hash}/{etag hash}/{variant hash}.{ext}``
    (bounded length, and one prefix per original to clear with a lifecycle rule)."""

    def digest(text: str, size: int) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:size]

    spec = json.dumps([asdict(variant), fmt], sort_keys=True)
    return f"{digest(key, 32)}/{digest(etag or '', 16)}/{digest(spec, 16)}.{EXTENSIONS[fmt]}"


@dataclass(frozen=True, slots=True)
class Target:
    """What a transform URL asks for, resolved: the source, the variant, the cache key."""

    source: Meta
    variant: Variant
    ckey: str
    extra: dict[str, str]  # headers every answer carries (Vary: Accept for f:auto)
    fallback: bool  # the source is the fallback image (the original is missing)


async def resolve(state: Any, signature: str, path: str, headers: Mapping[str, str]) -> Target:
    """Check the signature against the current and previous secrets (403), options and key
    (400), the URL's ``exp`` (403), find the source (404) and its format."""
    rt: Runtime = state.rt
    if not any(verify_path(secret, signature, f"/{path}") for secret in state.secrets):
        raise HTTPException(403, "bad signature (make transform URLs with `pixpipe sign`)")
    try:
        options, key = parse_path(path)
        check_original_key(key)
        options, hints = hinted(options, headers)
        variant = to_variant(options, rt.recipe, headers.get("accept"), rt.settings.api.watermark)
    except BadOptions as exc:
        raise HTTPException(400, str(exc)) from None
    if options.expires is not None and time.time() > options.expires:
        when = datetime.fromtimestamp(options.expires, UTC).isoformat()
        raise HTTPException(403, f"this URL expired at {when} (exp:{options.expires})")
    vary = [*(["Accept"] if options.format == "auto" else []), *hints]
    return await target(rt, key, variant, vary)


async def target(rt: Runtime, key: str, variant: Variant, vary: Sequence[str] = ()) -> Target:
    """The source of ``key`` (404, or the fallback image), checked against the byte limit,
    and where the result of ``variant`` on it is cached; ``vary``: the request headers the
    answer was chosen by (``Accept`` for ``f:auto``, the client hints)."""
    extra = {"Accept-CH": ", ".join(HINT_HEADERS)}
    if vary:
        extra["Vary"] = ", ".join(vary)
    source, fallback = await rt.stores.originals.head(key), False
    if source is None:
        source, fallback = await _fallback(rt), True
        if source is None:
            raise HTTPException(404, f"no original {key!r}")
    rt.settings.limits.frozen().check_size(source.size)  # before a byte of it is read
    if variant.watermark is not None:
        variant = await _watermark_version(rt, variant)
    fmt = await _output_format(rt.stores.originals, source, variant)
    return Target(source, variant, cache_key(source.key, source.etag, variant, fmt), extra,
                  fallback)  # fmt: skip


@router.get("/t/{signature}/{path:path}", response_class=Response, responses=_RESPONSES)
async def transform(
    request: Request, signature: str, path: str,
    accept: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    range: Annotated[str | None, Header()] = None,
) -> Response:  # fmt: skip
    """A signed on-the-fly rendition: ``w:800/h:600/fit:cover/g:attention/f:webp/q:75/dpr:2``,
    ``f:auto`` (AVIF, WebP or JPEG from ``Accept``), ``preset:NAME`` (a recipe variant)."""
    state = request.app.state
    headers = request.headers
    return await answer(state, lambda: resolve(state, signature, path, headers), if_none_match,
                        range)  # fmt: skip


async def answer(
    state: Any, resolving: Callable[[], Awaitable[Target]], if_none_match: str | None,
    range_header: str | None,
) -> Response:  # fmt: skip
    """Resolve the target, then answer it from memory, the cache store or one render; a
    failure of the source is its kind's status (422, 404, 503 + ``Retry-After``)."""
    try:
        found = await resolving()
        response = await _cached(state, found.ckey, if_none_match, range_header, found.extra)
        if response is None:
            response = await _render(state, found.source, found.variant, found.ckey,
                                     found.extra)  # fmt: skip
    except PixpipeError as exc:
        state.metrics.transforms.labels("error").inc()
        headers = {"Retry-After": "5"} if exc.kind is Kind.TRANSIENT else None
        body = {"detail": exc.message, "kind": exc.kind.value}
        return JSONResponse(body, _STATUS.get(exc.kind, 422), headers=headers)
    if found.fallback:  # the fallback image, never cached as if it were the real one
        response.status_code = 404
        response.headers["Cache-Control"] = "no-store"
    return response


class HotHits:
    """ASGI middleware: answers a transform whose result is in memory before FastAPI's routing
    and parameter parsing, which are most of the time of such a hit. Anything else (a miss, an
    error, the fallback image) goes on to the endpoint, which decides it the same way."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith("/t/")
        ):
            return await self.app(scope, receive, send)
        state = scope["app"].state
        headers = Headers(scope=scope)
        signature, _, path = scope["path"][3:].partition("/")
        try:
            target = await resolve(state, signature, path, headers)
        except (HTTPException, PixpipeError, BadKey):
            return await self.app(scope, receive, send)
        found = None if target.fallback else state.hot.get(target.ckey)
        if found is None:
            return await self.app(scope, receive, send)
        try:
            response = serve_bytes(
                found.data, found.etag, REVALIDATE, headers.get("if-none-match"),
                headers.get("range"), content_type=found.media,
                extra={**target.extra, "X-Cache": "hit"},
            )  # fmt: skip
        except HTTPException:  # 416: the endpoint says it properly
            return await self.app(scope, receive, send)
        state.metrics.transforms.labels("hit").inc()
        state.metrics.transform_cache_hits.inc()
        await response(scope, receive, send)


async def _watermark_version(rt: Runtime, variant: Variant) -> Variant:
    """The variant with its watermark's version (the image's etag): a new logo, new results."""
    assert variant.watermark is not None
    try:
        key = check_original_key(variant.watermark.image)
    except BadKey as exc:
        raise HTTPException(400, f"watermark: {exc}") from None
    found = await rt.stores.originals.head(key)
    if found is None:
        raise HTTPException(404, f"no watermark image {key!r} in the originals store")
    return replace(variant, watermark=replace(variant.watermark, version=found.etag or ""))


async def _fallback(rt: Runtime) -> Meta | None:
    key = rt.settings.api.transform_fallback
    return await rt.stores.originals.head(key) if key else None


async def _output_format(originals: Store, source: Meta, variant: Variant) -> str:
    """The result's format; only ``format: original`` needs the source's (its stored
    Content-Type where the store keeps one, else sniffed from its first bytes)."""
    if variant.format != "original":
        return variant.output_format()
    if originals.has_attributes and source.content_type in _FORMATS:
        return variant.output_format(_FORMATS[source.content_type])
    return variant.output_format(sniff(await originals.get_range(source.key, 0, 4096)))


async def _cached(
    state: Any, ckey: str, if_none_match: str | None, range_header: str | None,
    extra: dict[str, str],
) -> Response | None:  # fmt: skip
    media = MEDIA_TYPES[_BY_EXTENSION[ckey.rsplit(".", 1)[1]]]
    extra = {**extra, "X-Cache": "hit"}
    hot: HotCache = state.hot
    found = hot.get(ckey)
    try:
        if found is None:
            found = await _from_store(state.rt.stores.cache, ckey, media, hot)
        if found is not None:
            response = serve_bytes(found.data, found.etag, REVALIDATE, if_none_match,
                                   range_header, content_type=media, extra=extra)  # fmt: skip
        else:  # too big to keep in memory: streamed from the store
            response = await serve(state.rt.stores.cache, ckey, REVALIDATE, if_none_match,
                                   range_header, content_type=media, extra=extra)  # fmt: skip
    except HTTPException as exc:
        if exc.status_code == 404:
            return None
        raise
    except PixpipeError as exc:
        if exc.kind is Kind.MISSING:  # removed between the HEAD and the GET
            return None
        raise
    metrics: Metrics = state.metrics
    metrics.transforms.labels("hit").inc()
    metrics.transform_cache_hits.inc()
    return response


async def _from_store(cache: Store, ckey: str, media: str, hot: HotCache) -> Hot | None:
    """A result from the cache store, kept in memory too when small enough (404 if none)."""
    meta = await cache.head(ckey)
    if meta is None:
        raise HTTPException(404)
    if meta.size > hot.max_item:
        return None
    found = Hot(await cache.get(ckey), media, meta.etag or "")
    hot.put(ckey, found)
    return found


async def _render(
    state: Any, source: Meta, variant: Variant, ckey: str, extra: dict[str, str]
) -> Response:
    rt: Runtime = state.rt
    renders: Renders = state.renders
    metrics: Metrics = state.metrics

    async def work() -> tuple[bytes, str, str | None]:
        data = await rt.stores.originals.get(source.key)
        assets = {}
        if variant.watermark is not None:
            assets[variant.watermark.image] = await rt.stores.originals.get(variant.watermark.image)
        started = time.perf_counter()
        output = await renders.render(data, variant, assets)
        metrics.transform_seconds.observe(time.perf_counter() - started)
        etag = await rt.stores.cache.put(
            ckey, output.data, content_type=output.content_type, cache_control=REVALIDATE
        )
        if etag:
            state.hot.put(ckey, Hot(output.data, output.content_type, etag))
        return output.data, output.content_type, etag

    try:
        data, media, etag = await renders.once(ckey, work)
    except Busy:
        metrics.transforms.labels("busy").inc()
        raise HTTPException(
            503, "every transform slot is busy; retry shortly", headers={"Retry-After": "1"}
        ) from None
    metrics.transforms.labels("miss").inc()
    headers = {"Cache-Control": REVALIDATE, "X-Cache": "miss", **SAFE, **extra}
    if etag:
        headers["ETag"] = f'"{etag.strip(chr(34))}"'
    return Response(data, 200, headers, media_type=media)


__all__ = ["HotHits", "Target", "answer", "cache_key", "resolve", "router", "target"]
