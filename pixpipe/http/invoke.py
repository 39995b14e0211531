"""``POST /v1/invoke {key, maxDimension}`` → ``{resultKey}``: resize one stored original now,
in the API's render pool, and wait. The behaviour (key scheme, format, reuse) is the one of
every runtime: ``jobs/resize.py``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from ..errors import Kind, PixpipeError
from ..jobs.resize import resize, resize_variant
from ..pipeline.runtime import Runtime
from ..storage import check_original_key
from .api import base_url
from .auth import AUTH
from .models import InvokeRequest, InvokeResult, Problem
from .renders import Busy, Renders

router = APIRouter(tags=["images"])
_STATUS = {Kind.MISSING: 404, Kind.TRANSIENT: 503}


@router.post(
    "/v1/invoke", dependencies=AUTH, response_model=InvokeResult, response_model_by_alias=True,
    response_model_exclude_none=True,
    responses={code: {"model": Problem} for code in (400, 401, 404, 422, 503)},
)  # fmt: skip
async def invoke(request: Request, body: InvokeRequest) -> Any:
    """Resize one stored original to fit ``maxDimension`` × ``maxDimension`` and wait for it."""
    rt: Runtime = request.app.state.rt
    renders: Renders = request.app.state.renders
    key = check_original_key(body.key)
    variant = resize_variant(body.max_dimension)

    async def work() -> dict[str, Any]:
        pool = renders.pool
        resized = await resize(rt.stores, pool.render, pool.limits, key, body.max_dimension)
        return resized.to_dict()

    try:
        result = await renders.once(f"invoke:{variant.name}:{key}", work)
    except Busy:
        raise HTTPException(503, "every render slot is busy; retry shortly",
                            headers={"Retry-After": "1"}) from None  # fmt: skip
    except PixpipeError as exc:
        body_ = {"detail": exc.message, "kind": exc.kind.value}
        return JSONResponse(body_, _STATUS.get(exc.kind, 422))
    return {**result, "url": f"{base_url(request)}/images/{quote(result['resultKey'])}"}


__all__ = ["router"]
