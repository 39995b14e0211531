"""imgproxy's and thumbor's URLs served by pixpipe (PRODUCT.md §10):

- ``GET {[imgproxy] prefix}/{signature}/{options}/{source}`` (``compat/imgproxy.py``); sources
  are originals: ``local:///{key}``, or ``s3://{bucket}/{prefix}/{key}`` naming the originals
  store; any other host is refused;
- ``GET {[thumbor] prefix}/{hmac|unsafe}/{options}/{key}`` (``compat/thumbor.py``).

Signatures are checked over the raw path as sent (both projects sign the escaped form); the
request then becomes one of pixpipe's own transforms: the same renderer, the same result cache
keyed by the source's version, the same limits and failure kinds (``http/transform.py``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from ..compat import EFFECTS, BadUrl, Processing, imgproxy, thumbor
from ..pipeline.runtime import Runtime
from ..recipe import MAX_SIDE, RecipeError, Variant
from ..storage import BadKey, check_original_key
from .options import negotiate
from .transform import _RESPONSES, HotHits, Target, answer, target
from .transform import router as transform_router


def source_key(rt: Runtime, source: str) -> str:
    """The originals key an imgproxy source URL names (403 for anything else)."""
    store = rt.stores.originals.url.rstrip("/")
    if source.startswith("local:///"):
        key = source.removeprefix("local:///")
    elif source.startswith("s3://") and source.startswith(store.replace("s3a://", "s3://") + "/"):
        key = source[len(store) + 1 :]
    else:
        raise HTTPException(403, f"source {source.split('?')[0][:200]!r} is not allowed: use "
                                 "local:///{key} or s3:// URLs of the originals store")  # fmt: skip
    try:
        return check_original_key(key)
    except BadKey as exc:
        raise HTTPException(400, str(exc)) from None


def to_variant(wanted: Processing, accept: str | None) -> Variant:
    """Processing options → the one variant pixpipe renders (dpr applied, sides capped)."""
    width, height, enlarge = wanted.width, wanted.height, wanted.enlarge
    if width is None and height is None:  # no size: the original's, never enlarged
        width, height, enlarge = MAX_SIDE, MAX_SIDE, False
    dpr = wanted.dpr
    if dpr != 1.0:
        width, height = (None if s is None else max(1, min(MAX_SIDE, round(s * dpr)))
                         for s in (width, height))  # fmt: skip
    fmt = wanted.format or "original"
    changes: dict[str, Any] = {}
    if wanted.quality is not None:
        changes["quality"] = wanted.quality
    if wanted.background is not None:
        changes["background"] = wanted.background
    for effect in EFFECTS:
        changes[effect] = getattr(wanted, effect)
    try:
        variant = Variant(
            name="t", width=width, height=height, fit=wanted.fit, gravity=wanted.gravity,
            format=negotiate(accept) if fmt == "auto" else fmt, enlarge=enlarge,
            strip=wanted.strip,
        )  # fmt: skip
        return replace(variant, **changes) if changes else variant
    except RecipeError as exc:
        raise HTTPException(400, str(exc).replace('variant "t": ', "options: ")) from None


@contextlib.contextmanager
def _bad_url_is_400() -> Iterator[None]:
    try:
        yield
    except BadUrl as exc:
        raise HTTPException(400, str(exc)) from None


async def resolve_imgproxy(state: Any, raw_path: str, accept: str | None) -> Target:
    rt: Runtime = state.rt
    settings = rt.settings.imgproxy
    with _bad_url_is_400():
        signature, signed = imgproxy.split(raw_path)
    pairs = settings.pairs()
    if pairs and not imgproxy.verify(pairs, signature, signed, settings.signature_size):
        raise HTTPException(403, "bad imgproxy signature (the key/salt pair or the path differ)")
    with _bad_url_is_400():
        parsed = imgproxy.parse(signed, settings.presets)
        wanted = imgproxy.processing(parsed)
    if wanted.expires is not None and time.time() > wanted.expires:
        raise HTTPException(403, f"this URL expired at {wanted.expires} (unix time)")
    key = source_key(rt, parsed.source)
    if wanted.watermark is not None:  # imgproxy's image is its server's: here [api] watermark
        if not rt.settings.api.watermark:
            raise HTTPException(400, "imgproxy option watermark needs [api] watermark (an "
                                     "originals key)")  # fmt: skip
        wanted = replace(wanted, watermark=replace(wanted.watermark,
                                                   image=rt.settings.api.watermark))  # fmt: skip
    vary = ["Accept"] if wanted.format == "auto" else []
    return await target(rt, key, to_variant(wanted, accept), vary)


async def resolve_thumbor(state: Any, raw_path: str, accept: str | None) -> Target:
    rt: Runtime = state.rt
    settings = rt.settings.thumbor
    with _bad_url_is_400():
        signature, signed = thumbor.split(raw_path)
    if signature == "unsafe":
        if not settings.allow_unsafe:
            raise HTTPException(403, "unsafe thumbor URLs are off ([thumbor] allow_unsafe)")
    elif settings.security_key is None or not thumbor.verify(
        settings.security_key.get_secret_value(), signature, signed
    ):
        raise HTTPException(403, "bad thumbor signature (the security key or the path differ)")
    with _bad_url_is_400():
        parsed = thumbor.parse(signed)
        wanted = thumbor.processing(parsed)
    try:
        key = check_original_key(parsed.image)
    except BadKey as exc:
        raise HTTPException(400, str(exc)) from None
    return await target(rt, key, to_variant(wanted, accept))


Resolve = Callable[[Any, str, str | None], Awaitable[Target]]


def _route(routes: APIRouter, prefix: str, resolving: Resolve, summary: str) -> None:
    @routes.get(prefix + "/{path:path}", response_class=Response, responses=_RESPONSES,
                summary=summary)  # fmt: skip
    async def compatible(
        request: Request, path: str,
        accept: Annotated[str | None, Header()] = None,
        if_none_match: Annotated[str | None, Header()] = None,
        range: Annotated[str | None, Header()] = None,
    ) -> Response:  # fmt: skip
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        signed = raw[len(prefix) :] if raw.startswith(prefix + "/") else "/" + path
        state = request.app.state
        return await answer(state, lambda: resolving(state, signed, accept), if_none_match,
                            range)  # fmt: skip


def mount(app: FastAPI, imgproxy_prefix: str, thumbor_prefix: str) -> None:
    """Every transform route on ``app``: ``/t/`` (hits answered from memory first, by
    ``HotHits``), imgproxy's and thumbor's URLs; a bad key is a 400. The API's app and the
    Lambda's transforms app (``aws/transforms.py``) are wired by this one function."""
    app.include_router(transform_router)
    app.add_middleware(HotHits)
    app.include_router(router(imgproxy_prefix, thumbor_prefix))
    app.add_exception_handler(BadKey, bad_key)


async def bad_key(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, 400)


def router(imgproxy_prefix: str, thumbor_prefix: str) -> APIRouter:
    """Both routes, under their prefixes (defaults ``/imgproxy`` and ``/thumbor``)."""
    routes = APIRouter(tags=["transforms"])
    _route(routes, "/" + imgproxy_prefix.strip("/"), resolve_imgproxy,
           "An imgproxy URL, signed as imgproxy signs it")  # fmt: skip
    _route(routes, "/" + thumbor_prefix.strip("/"), resolve_thumbor,
           "A thumbor URL, signed as thumbor signs it")  # fmt: skip
    return routes


__all__ = ["bad_key", "mount", "resolve_imgproxy", "resolve_thumbor", "router", "source_key",
           "to_variant"]  # fmt: skip
