"""The HTTP service (FastAPI): uploads, image state, failures, S3 notifications, health, and
delivery of originals and variants. Write endpoints need ``Authorization: Bearer <key>``."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import Settings, api_keys_from_env
from ..errors import Kind, PixpipeError
from ..imaging.inspect import sniff
from ..ingest import NotFailed, announce, ingest_s3, retry_failed
from ..service import Runtime
from ..stores import BadKey, validate_key
from .delivery import router as delivery_router

STATUS = {
    Kind.CORRUPT: 422, Kind.UNSUPPORTED: 415, Kind.TOO_LARGE: 413, Kind.MISSING: 404,
    Kind.TRANSIENT: 503,
}  # fmt: skip
CONTENT_TYPES = {
    "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif",
    "tiff": "image/tiff", "heif": "image/heic", "avif": "image/avif", "svg": "image/svg+xml",
    "pdf": "application/pdf",
}  # fmt: skip
KEY_FILE = "api-key"


def api_keys(settings: Settings, create: bool = False) -> list[str]:
    """Configured keys; with none, the data dir's generated key (made when ``create``)."""
    keys = api_keys_from_env(settings)
    if keys:
        return keys
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return [path.read_text().strip()] if path.exists() else []


_bearer = HTTPBearer(auto_error=False)


def authorised(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Write endpoints: ``Authorization: Bearer <one of the API keys>``."""
    keys = request.app.state.keys
    if creds is None or not any(secrets.compare_digest(creds.credentials, k) for k in keys):
        raise HTTPException(401, "missing or wrong API key (Authorization: Bearer <key>)")


def create_app(rt: Runtime) -> FastAPI:
    """The app, bound to a connected runtime (its lifecycle is the caller's)."""
    app = FastAPI(title="pixpipe", version="0.1.0", summary="Images in, web-ready variants out.")
    app.state.rt = rt
    app.state.keys = api_keys(rt.settings, create=True)
    auth = [Depends(authorised)]

    @app.exception_handler(PixpipeError)
    async def pixpipe_error(request: Request, exc: PixpipeError) -> Response:
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": exc.message, "kind": exc.kind.value}, STATUS[exc.kind])

    @app.exception_handler(BadKey)
    async def bad_key(request: Request, exc: BadKey) -> Response:
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": str(exc)}, 400)

    @app.post("/v1/images", status_code=201, dependencies=auth)
    async def upload(request: Request, key: Annotated[str, Query()]) -> dict[str, Any]:
        validate_key(key)
        data = await _read_upload(request, rt.settings.limits.max_input_bytes)
        fmt = sniff(data)
        await rt.stores.originals.put(key, data, content_type=CONTENT_TYPES[fmt])
        await announce(rt, key)
        base = str(request.base_url).rstrip("/")
        return {
            "key": key, "state": "pending",
            "original_url": f"{base}/images/original/{quote(key)}",
            "variants": {v.name: f"{base}/images/{quote(v.key_for(key, fmt))}" for v in rt.recipe},
        }  # fmt: skip

    @app.get("/v1/images/{key:path}")
    async def image_state(request: Request, key: str) -> dict[str, Any]:
        state = await rt.states.get(validate_key(key))
        if state is None:
            raise HTTPException(404, f"no image {key!r}")
        return _public_state(state, str(request.base_url).rstrip("/"))

    @app.get("/v1/failures")
    async def failures() -> list[dict[str, Any]]:
        return [
            {"key": s["key"], **s.get("error", {}), "attempts": s.get("attempts"),
             "time": s.get("updated")}
            for s in await rt.states.failed()
        ]  # fmt: skip

    @app.post("/v1/failures/{key:path}/retry", status_code=202, dependencies=auth)
    async def retry_failure(key: str) -> dict[str, Any]:
        try:
            return await retry_failed(rt, validate_key(key))
        except NotFailed as exc:
            raise HTTPException(409, str(exc)) from None

    @app.post("/v1/events/s3", status_code=202, dependencies=auth)
    async def s3_events(request: Request) -> dict[str, Any]:
        events = await ingest_s3(rt, await request.body())
        return {"accepted": [e.key for e in events]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        problems = []
        if not rt.nc.is_connected:
            problems.append("bus not connected")
        for store in rt.stores:
            try:
                await store.head("_readyz")
            except PixpipeError as exc:
                problems.append(f"{store.url}: {exc.message}")
        from fastapi.responses import JSONResponse

        body = {"status": "ok" if not problems else "unavailable", "problems": problems}
        return JSONResponse(body, 503 if problems else 200)

    app.include_router(delivery_router)
    return app


async def _read_upload(request: Request, limit: int) -> bytes:
    """The raw body, or the multipart field ``file``; 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PixpipeError(Kind.TOO_LARGE, f"upload is over the limit of {limit} bytes")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_part_size=limit + 1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "multipart upload needs a file field named 'file'")
        data = await upload.read()
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PixpipeError(Kind.TOO_LARGE, f"upload is over the limit of {limit} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > limit:
        raise PixpipeError(Kind.TOO_LARGE, f"upload is over the limit of {limit} bytes")
    if not data:
        raise HTTPException(400, "empty upload")
    return data


def _public_state(state: dict[str, Any], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": state["key"], "state": state["state"], "variants": {}}
    for name, info in (state.get("variants") or {}).items():
        out["variants"][name] = {
            "url": f"{base}/images/{quote(info['key'])}",
            **{k: info[k] for k in ("width", "height", "bytes", "format")},
        }
    for extra in ("error", "placeholder", "dominant"):
        if state.get(extra):
            out[extra] = state[extra]
    return out


__all__ = ["api_keys", "create_app"]
