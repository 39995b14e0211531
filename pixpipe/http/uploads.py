"""Uploads: ``POST /v1/images?key=K`` (raw body or multipart ``file``), presigned uploads
(``POST /v1/uploads``) and the local stores' own presigned ``PUT /v1/uploads/{key}``.

Checks at the edge, in this order: the key rules (400), the size (413), the bytes name an image
we take (415). Decoding problems (a corrupt file, a decompression bomb) are the worker's to
find: the upload is kept and the image lands in the failures list with its kind.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Header, HTTPException, Query, Request

from ..errors import Kind, PixpipeError
from ..imaging.sniff import sniff
from ..pipeline.ingest import announce
from ..pipeline.runtime import Runtime
from ..storage import Store, check_original_key
from .api import base_url
from .auth import AUTH
from .delivery import MEDIA_TYPES
from .models import PresignedUpload, Problem, Uploaded, UploadRequest
from .orders import check_batch, hold_upload
from .signing import upload_token, verify_upload

router = APIRouter(tags=["uploads"])
ACCEPTED_TYPES = (
    *MEDIA_TYPES.values(), "image/jpg", "image/heif", "image/heic-sequence", "image/svg",
    "application/postscript", "application/illustrator",
)  # fmt: skip
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 413, 415)
}


def _too_large(limit: int) -> PixpipeError:
    return PixpipeError(Kind.TOO_LARGE, f"upload is over the limit of {limit} bytes")


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
    data = await _read_upload(request, rt.settings.limits.max_input_bytes)
    result = await _store(request, key, data, batch)
    request.app.state.metrics.uploads.labels("api").inc()
    return result


async def _store(
    request: Request, key: str, data: bytes, batch: str | None = None
) -> dict[str, Any]:
    rt: Runtime = request.app.state.rt
    fmt = sniff(data)
    if batch is not None:
        await check_batch(rt, batch, key)
    await rt.stores.originals.put(key, data, content_type=MEDIA_TYPES[fmt])
    await (hold_upload(rt, batch, key) if batch is not None else announce(rt, key))
    base = base_url(request)
    return {
        "key": key, "state": "pending",
        "original_url": f"{base}/images/original/{quote(key)}",
        "variants": {v.name: f"{base}/images/{quote(v.key_for(key, fmt))}" for v in rt.recipe},
    }  # fmt: skip


async def _read_upload(request: Request, limit: int) -> bytes:
    """The raw body, or the multipart field ``file``; 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise _too_large(limit)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10, max_part_size=limit + 1) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(400, "multipart upload needs a file field named 'file'")
            data = await upload.read()
    else:
        data = await _read_exactly(request, limit, None)
    if len(data) > limit:
        raise _too_large(limit)
    if not data:
        raise HTTPException(400, "empty upload")
    return data


async def _read_exactly(request: Request, limit: int, expected: int | None) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if expected is not None and size > expected:
            raise HTTPException(400, f"this upload URL takes exactly {expected} bytes (got more)")
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _signable(store: Store) -> bool:
    from obstore.store import AzureStore, GCSStore, S3Store

    return isinstance(store.inner, S3Store | GCSStore | AzureStore)


@router.post("/v1/uploads", dependencies=AUTH, response_model=PresignedUpload, responses=_ERRORS)
async def presign(request: Request, body: UploadRequest) -> dict[str, Any]:
    """A URL the client PUTs the original to directly, valid for ``expires_in`` seconds.

    On S3/GCS/Azure stores it is the store's own presigned URL (the bucket's notifications
    announce the upload); on local stores it is pixpipe's own ``PUT /v1/uploads/{key}``, whose
    token binds the key, the Content-Type and the exact length.
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
        raise _too_large(limit)
    expires = int(time.time()) + body.expires_in
    headers = {"Content-Type": content_type}
    store = rt.stores.originals
    if _signable(store):
        import obstore

        signable: Any = store.inner  # an S3, GCS or Azure store (checked above)
        url = await obstore.sign_async(signable, "PUT", key, timedelta(seconds=body.expires_in))
    else:
        secret = request.app.state.secret
        token = upload_token(secret, key, content_type, body.content_length, expires)
        query = urlencode({"expires": expires, "length": body.content_length,
                           "type": content_type, "token": token})  # fmt: skip
        url = f"{base_url(request)}/v1/uploads/{quote(key)}?{query}"
    return {"url": url, "method": "PUT", "headers": headers,
            "expires_at": datetime.fromtimestamp(expires, UTC)}  # fmt: skip


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
    limit = request.app.state.rt.settings.limits.max_input_bytes
    data = await _read_exactly(request, limit, length)
    if len(data) != length:
        raise HTTPException(400, f"this upload URL takes exactly {length} bytes (got {len(data)})")
    result = await _store(request, key, data)
    request.app.state.metrics.uploads.labels("presigned").inc()
    return result


__all__ = ["ACCEPTED_TYPES", "router"]
