"""The HTTP service (FastAPI): the API of PRODUCT.md §6, CDN-style delivery, signed on-the-fly
transforms, metrics, health, and the dashboard at ``/``. Write endpoints need
``Authorization: Bearer <key>``; delivery is public; transforms need a signature.

``create_app(rt)`` binds the app to a connected runtime; the app's lifespan starts the metrics'
event subscriptions and stops the transform render processes.

| module | routes |
|---|---|
| ``uploads.py`` | ``POST /v1/images``, ``POST /v1/uploads``, ``PUT /v1/uploads/{key}`` |
| ``bodies.py`` | upload bodies as streams under the byte limit (raw, chunked, multipart) |
| ``api.py`` | ``GET /v1/images[/{key}]``, failures and retry, ``POST /v1/events/s3`` |
| ``live.py`` | ``GET /v1/images/{key}/events``, ``GET /v1/events`` (SSE) |
| ``responsive.py`` | ``GET /v1/images/{key}/srcset`` |
| ``invoke.py`` | ``POST /v1/invoke`` |
| ``orders.py`` | ``POST /v1/batches``, ``GET /v1/batches/{id}`` |
| ``backfills.py`` | ``POST /v1/reprocess``, ``GET /v1/reprocess/{run}`` |
| ``dashboard.py`` | ``GET /v1/stats``, ``/v1/queues``, ``/v1/batches``, ``/v1/reprocess`` |
| ``delivery.py`` | ``GET /images/original/{key}``, ``GET /images/{variant}/{rest}`` |
| ``transform.py`` | ``GET /t/{signature}/{options}/{key}`` (grammar: ``options.py``) |
| ``compat.py`` | imgproxy's and thumbor's URLs (grammars in ``pixpipe/compat/``) |
| ``hot.py`` | transform results in memory, answered first by ``transform.HotHits`` |
| ``metrics.py`` | ``GET /metrics`` |
| ``static/`` | the dashboard (plain HTML/CSS/JS) |
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..bus import bus_health
from ..errors import Kind, PixpipeError
from ..pipeline.runtime import Runtime
from . import (
    api,
    backfills,
    compat,
    delivery,
    invoke,
    live,
    orders,
    responsive,
    uploads,
)
from .cost import router as cost_router
from .dashboard import router as dashboard_router
from .hot import HotCache
from .metrics import Metrics
from .metrics import router as metrics_router
from .renders import Renders
from .signing import api_keys, signing_secret

STATIC = Path(__file__).parent / "static"
STATUS = {
    Kind.CORRUPT: 422, Kind.UNSUPPORTED: 415, Kind.TOO_LARGE: 413, Kind.MISSING: 404,
    Kind.TRANSIENT: 503,
}  # fmt: skip
DESCRIPTION = """Images in, web-ready variants out.

* **Write endpoints** take `Authorization: Bearer <key>` (`pixpipe up` prints one).
* **Delivery** (`/images/…`) is public, as from a CDN.
* **On-the-fly transforms** (`/t/{signature}/{options}/{key}`) need an HMAC-SHA256 signature
  over `/{options}/{key}` (URL-safe base64, no padding); `pixpipe sign OPTIONS KEY` makes one.
* **Errors** are `{"detail": "…", "kind": "…"}`; `kind` is one of `corrupt`, `unsupported`,
  `too_large`, `missing`, `transient` where a failure kind applies.
"""


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await app.state.metrics.start(app.state.rt)
    try:
        yield
    finally:
        await app.state.metrics.stop()
        await app.state.renders.close()


def create_app(rt: Runtime) -> FastAPI:
    """The app, bound to a connected runtime (its lifecycle is the caller's)."""
    app = FastAPI(
        title="pixpipe", version="0.1.0", summary="Images in, web-ready variants out.",
        description=DESCRIPTION, lifespan=lifespan,
    )  # fmt: skip
    app.state.rt = rt
    app.state.keys = api_keys(rt.settings, create=True)
    app.state.secret = signing_secret(rt.settings, create=True)
    # Transform URLs verify with the current secret or one signed with before (rotation).
    app.state.secrets = [app.state.secret, *rt.settings.api.previous_signing_secrets]
    app.state.metrics = Metrics()
    app.state.renders = Renders(rt.settings.limits.frozen())
    app.state.hot = HotCache()
    app.state.streams = live.Streams(rt.settings.api.max_event_streams)

    @app.exception_handler(PixpipeError)
    async def pixpipe_error(request: Request, exc: PixpipeError) -> Response:
        headers = {"Retry-After": "5"} if exc.kind is Kind.TRANSIENT else None
        body = {"detail": exc.message, "kind": exc.kind.value}
        return JSONResponse(body, STATUS[exc.kind], headers=headers)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready."}})
    async def readyz() -> Response:
        """The bus and every store are reachable."""
        return await _readiness(rt)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # live and responsive before api: /v1/images/{key}/events (…/srcset) must not be read as
    # the key "…/events".
    for module in (live, responsive, api, uploads, invoke, delivery):
        app.include_router(module.router)
    app.include_router(metrics_router)
    app.include_router(cost_router)
    app.include_router(orders.router)
    app.include_router(backfills.router)
    app.include_router(dashboard_router)
    compat.mount(app, rt.settings.imgproxy.prefix, rt.settings.thumbor.prefix)
    return app


async def _readiness(rt: Runtime) -> Response:
    """Ready: the bus connected, the stream and the state bucket with every copy asked for
    (``[bus] replicas``: a cluster that lost a node says so), every store answering."""
    problems: list[str] = []
    health: dict[str, Any] = {"connected": False}
    if not rt.nc.is_connected:
        problems.append("bus not connected")
    else:
        health = await bus_health(rt.nc, rt.js, rt.settings.bus.replicas)
        if not health["ok"]:
            problems.append(f"bus: {health.get('error') or 'fewer copies than [bus] replicas'}")
    for store in rt.stores:
        try:
            await store.head("_readyz")
        except PixpipeError as exc:
            problems.append(f"{store.url}: {exc.message}")
    body: dict[str, Any] = {
        "status": "unavailable" if problems else "ok", "problems": problems, "bus": health,
    }  # fmt: skip
    return JSONResponse(body, 503 if problems else 200)


__all__ = ["api_keys", "create_app"]
