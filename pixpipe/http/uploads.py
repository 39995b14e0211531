"""Uploads: ``POST /v1/images?key=K`` (raw body or multipart ``file``), presigned uploads
(``POST /v1/uploads``) and the local stores' own presigned ``PUT /v1/uploads/{key}``.

Checks at the edge, in this order: the key rules (400), a declared ``Content-Length`` over
the limit (413), the first bytes name an image we take (415), the limit while the body streams
into the store (413 the moment it is crossed; ``http/bodies.py``): never whole in memory.
Decoding problems (a corrupt file, a decompression bomb) are the worker's to find: the upload
is kept and the image lands in the failures list with its kind.

Presigned uploads bind key, type and exact length: on S3 a presigned POST whose policy S3
enforces (``storage/presign.py``); on local stores a token pixpipe checks, good for one upload,
whose bytes must be of the type it names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Header, HTTPException, Query, Request
from nats.js.errors import KeyWrongLastSequenceError

from .. import bus, tracing
from ..errors import Kind, PixpipeError
from ..pipeline.ingest import announce
from ..pipeline.runtime import Runtime
from ..storage import check_original_key
from ..storage.presign import presign_upload, signable
from . import bodies
from .api import base_url
from .auth import AUTH
from .delivery import MEDIA_TYPES
from .models import PresignedUpload, Problem, Uploaded, UploadRequest
from .orders import check_batch, hold_upload
from .signing import upload_token, verify_upload

router = APIRouter(tags=["uploads"])
# The types a presigned upload may name, and the sniffed format each one admits.
ALIASES = {
    "image/jpg": "jpeg", "image/heif": "heif", "image/heic-sequence": "heif", "image/svg": "svg",
    "application/postscript": "pdf", "application/illustrator": "pdf",
}  # fmt: skip
ACCEPTED_TYPES = (*MEDIA_TYPES.values(), *ALIASES)
_FORMAT_OF = {**{t: f for f, t in MEDIA_TYPES.items()}, **ALIASES}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 413, 415)
}


@router.post("/v1/images", status_code=201, dependencies=AUTH, response_model=Uploaded,
             responses=_ERRORS)  # fmt: skip
async def upload(
    request: Request,
    key: Annotated[str, Query(description="Where the original will live.", min_length=1)],
    batch: Annotated[str | None, Query(description="Hold it until its batch is complete.")] = None,
) -> dict[str, Any]:
    """Upload an original: the raw body (any Content-Type), or a multipart field ``file``."""
    rt: Runtime = request.app.state.rt
    check_original_key(key)
    limit = rt.settings.limits.max_input_bytes
    bodies.check_declared(request, limit)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        chunks = bodies.multipart_file(request, limit)
    else:
        chunks = bodies.raw(request, limit)
    with tracing.request_span("upload", request.headers, key=key, batch=batch):
        result = await _store(request, key, chunks, batch)
    request.app.state.metrics.uploads.labels("api").inc()
    return result


async def _store(
    request: Request, key: str, chunks: AsyncIterator[bytes], batch: str | None = None,
    expected: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Sniff the first bytes (``expected``: the format they must be), stream the rest into
    the originals store, announce it (or hold it for its batch)."""
    rt: Runtime = request.app.state.rt
    fmt, whole = await bodies.sniffed(chunks)
    if expected is not None and fmt != expected:
        raise PixpipeError(Kind.UNSUPPORTED, f"this upload URL takes {expected} (the bytes are "
                                             f"{fmt})")  # fmt: skip
    if batch is not None:
        await check_batch(rt, batch, key)
    await rt.stores.originals.put(key, whole, content_type=MEDIA_TYPES[fmt])
    await (hold_upload(rt, batch, key) if batch is not None else announce(rt, key))
    base = base_url(request)
    return {
        "key": key, "state": "pending",
        "original_url": f"{base}/images/original/{quote(key)}",
        "variants": {v.name: f"{base}/images/{quote(v.key_for(key, fmt))}" for v in rt.recipe},
    }  # fmt: skip


@router.post("/v1/uploads", dependencies=AUTH, response_model=PresignedUpload, responses=_ERRORS)
async def presign(request: Request, body: UploadRequest) -> dict[str, Any]:
    """Where the client sends the original directly, valid for ``expires_in`` seconds.

    On S3 stores a presigned POST (send ``fields`` then the ``file`` as a multipart form): S3
    refuses any other length or type, and the bucket's notifications announce the upload. On
    GCS/Azure their signed PUT; on local stores pixpipe's own ``PUT /v1/uploads/{key}``, whose
    token binds the key, the type and the exact length, and is good for one upload.
    """
    rt: Runtime = request.app.state.rt
    key = check_original_key(body.key)
    content_type = body.content_type.strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise PixpipeError(
            Kind.UNSUPPORTED, f"content_type must be one of {', '.join(ACCEPTED_TYPES)} "
            f"(got {body.content_type!r})",
        )  # fmt: skip
    limit = rt.settings.limits.max_input_bytes
    if body.content_length > limit:
        raise bodies.too_large(limit)
    expires = int(time.time()) + body.expires_in
    store = rt.stores.originals
    expires_at = datetime.fromtimestamp(expires, UTC)
    if signable(store):
        grant = await presign_upload(store, key, content_type, body.content_length,
                                     body.expires_in)  # fmt: skip
        return {"url": grant.url, "method": grant.method, "headers": grant.headers,
                "fields": grant.fields, "expires_at": expires_at}  # fmt: skip
    secret = request.app.state.secret
    token = upload_token(secret, key, content_type, body.content_length, expires)
    query = urlencode({"expires": expires, "length": body.content_length,
                       "type": content_type, "token": token})  # fmt: skip
    return {"url": f"{base_url(request)}/v1/uploads/{quote(key)}?{query}", "method": "PUT",
            "headers": {"Content-Type": content_type}, "fields": {},
            "expires_at": expires_at}  # fmt: skip


async def _spend(rt: Runtime, token: str) -> None:
    """Mark a local upload token used, once: a second upload with it is refused (403)."""
    tokens = await rt.js.key_value(bus.TOKENS_BUCKET)
    name = bus.kv_name(hashlib.sha256(token.encode()).hexdigest()[:32])
    try:
        await tokens.create(name, b"used")
    except KeyWrongLastSequenceError:
        raise HTTPException(403, "this upload URL was used already (ask POST /v1/uploads "
                                 "for a new one)") from None  # fmt: skip


@router.put("/v1/uploads/{key:path}", status_code=201, response_model=Uploaded, responses=_ERRORS)
async def presigned_put(
    request: Request,
    key: str,
    expires: Annotated[int, Query(ge=0)],
    length: Annotated[int, Query(ge=1)],
    type: Annotated[str, Query(min_length=1)],
    token: Annotated[str, Query(min_length=1)],
    content_type: Annotated[str | None, Header()] = None,
    content_length: Annotated[int | None, Header()] = None,
) -> dict[str, Any]:
    """The upload URL handed out by ``POST /v1/uploads`` on local stores (no API key: the
    token is the permission)."""
    check_original_key(key)
    if not verify_upload(request.app.state.secret, token, key, type, length, expires):
        raise HTTPException(403, "bad upload token (ask POST /v1/uploads for a new URL)")
    if time.time() > expires:
        raise HTTPException(403, "this upload URL has expired (ask POST /v1/uploads for a new one)")
    if (content_type or "").split(";")[0].strip().lower() != type:
        raise HTTPException(400, f"send this upload with Content-Type: {type}")
    if content_length is not None and content_length != length:
        raise HTTPException(400, f"this upload URL takes exactly {length} bytes "
                                 f"(Content-Length is {content_length})")  # fmt: skip
    rt: Runtime = request.app.state.rt
    await _spend(rt, token)
    chunks = bodies.raw(request, rt.settings.limits.max_input_bytes, exactly=length)
    with tracing.request_span("upload", request.headers, key=key, presigned=True):
        result = await _store(request, key, chunks, expected=_FORMAT_OF[type])
    request.app.state.metrics.uploads.labels("presigned").inc()
    return result


__all__ = ["ACCEPTED_TYPES", "router"]
