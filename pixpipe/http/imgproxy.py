"""imgproxy's URLs served by pixpipe: ``GET {[imgproxy] prefix}/{signature}/{options}/{source}``.

The signature is checked over the raw path as sent (imgproxy signs the escaped form), the
options read as imgproxy reads them (``compat/imgproxy.py``), and the request becomes one of
pixpipe's own transforms: the same renderer, the same result cache keyed by the source's
version, the same limits (``http/transform.py``). Sources are originals: ``local:///{key}``,
or ``s3://{bucket}/{prefix}/{key}`` naming the originals store; any other host is refused.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response

from ..compat import imgproxy
from ..pipeline.runtime import Runtime
from ..recipe import MAX_SIDE, RecipeError, Variant
from ..storage import BadKey, check_original_key
from .options import negotiate
from .transform import _RESPONSES, Target, answer, target


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


def to_variant(wanted: imgproxy.Processing, accept: str | None) -> Variant:
    """Processing options → the one variant pixpipe renders (dpr applied, sides capped)."""
    width = height = None
    if wanted.width or wanted.height:
        width, height = wanted.width, wanted.height
    else:
        width = height = MAX_SIDE  # no size: the original's, never enlarged
    if wanted.dpr != 1.0:
        width, height = (None if s is None else max(1, min(MAX_SIDE, round(s * wanted.dpr)))
                         for s in (width, height))  # fmt: skip
    fmt = wanted.format or "original"
    try:
        variant = Variant(
            name="t", width=width, height=height, fit=wanted.fit, gravity=wanted.gravity,
            format=negotiate(accept) if fmt == "auto" else fmt, enlarge=wanted.enlarge,
            strip=wanted.strip,
        )  # fmt: skip
        changes: dict[str, Any] = {}
        if wanted.quality is not None:
            changes["quality"] = wanted.quality
        if wanted.background is not None:
            changes["background"] = wanted.background
        return replace(variant, **changes) if changes else variant
    except RecipeError as exc:
        raise HTTPException(400, str(exc).replace('variant "t": ', "imgproxy options: ")) from None


async def resolve(state: Any, raw_path: str, accept: str | None) -> Target:
    rt: Runtime = state.rt
    settings = rt.settings.imgproxy
    signature, signed = imgproxy.split(raw_path)
    pairs = settings.pairs()
    if pairs and not imgproxy.verify(pairs, signature, signed, settings.signature_size):
        raise HTTPException(403, "bad imgproxy signature (the key/salt pair or the path differ)")
    try:
        parsed = imgproxy.parse(signed, settings.presets)
        wanted = imgproxy.processing(parsed)
    except imgproxy.BadUrl as exc:
        raise HTTPException(400, str(exc)) from None
    if wanted.expires is not None and time.time() > wanted.expires:
        raise HTTPException(403, f"this URL expired at {wanted.expires} (unix time)")
    key = source_key(rt, parsed.source)
    negotiated = (wanted.format or "") == "auto"
    return await target(rt, key, to_variant(wanted, accept), negotiated=negotiated)


def router(prefix: str) -> APIRouter:
    """The imgproxy route under ``prefix`` (``[imgproxy] prefix``, default ``/imgproxy``)."""
    routes = APIRouter(tags=["transforms"])
    prefix = "/" + prefix.strip("/")

    @routes.get(prefix + "/{path:path}", response_class=Response, responses=_RESPONSES)
    async def imgproxy_url(
        request: Request, path: str,
        accept: Annotated[str | None, Header()] = None,
        if_none_match: Annotated[str | None, Header()] = None,
        range: Annotated[str | None, Header()] = None,
    ) -> Response:  # fmt: skip
        """An imgproxy URL, signed as imgproxy signs it (``[imgproxy] keys``/``salts``)."""
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        signed = raw[len(prefix) :] if raw.startswith(prefix + "/") else "/" + path
        state = request.app.state
        return await answer(state, lambda: resolve(state, signed, accept), if_none_match, range)

    return routes


__all__ = ["resolve", "router", "source_key", "to_variant"]
