"""``POST /v1/invoke {key, maxDimension}`` → ``{resultKey}``: resize one stored original now,
in the API's render pool, and wait (the synchronous payload the AWS Lambda also takes).

The result is a variant named ``max{N}`` (fit inside N×N, never enlarged, the original's format
where it is a web format, else JPEG), stored like any variant — ``max800/users/42/a.jpg`` — and
so served at ``/images/max800/users/42/a.jpg``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from ..errors import Kind, PixpipeError
from ..recipe import Variant, strip_extension
from ..results import CACHE_CONTROL
from ..service import Runtime
from ..stores import Stores, validate_key
from .api import base_url
from .auth import AUTH
from .models import InvokeRequest, InvokeResult, Problem
from .renders import Busy, Renders

if TYPE_CHECKING:
    from ..imaging import Output

Render = Callable[[bytes, Variant], Awaitable["Output"]]
router = APIRouter(tags=["images"])
_STATUS = {Kind.MISSING: 404, Kind.TRANSIENT: 503}


def invoke_variant(max_dimension: int) -> Variant:
    """The variant ``POST /v1/invoke`` renders for ``maxDimension``."""
    return Variant(f"max{max_dimension}", max_dimension, max_dimension, "inside",
                   format="original")  # fmt: skip


async def invoke_key(
    stores: Stores, render: Render, key: str, max_dimension: int
) -> dict[str, Any]:
    """Render ``max{N}`` of one stored original into the variants store (API and CLI)."""
    variant = invoke_variant(max_dimension)
    data = await stores.originals.get(key)
    output = await render(data, variant)
    result_key = f"{variant.name}/{strip_extension(key)}.{output.extension}"
    await stores.variants.put(result_key, output.data, content_type=output.content_type,
                              cache_control=CACHE_CONTROL)  # fmt: skip
    return {"resultKey": result_key, "width": output.width, "height": output.height}


@router.post(
    "/v1/invoke", dependencies=AUTH, response_model=InvokeResult, response_model_by_alias=True,
    responses={code: {"model": Problem} for code in (400, 401, 404, 422, 503)},
)  # fmt: skip
async def invoke(request: Request, body: InvokeRequest) -> Any:
    """Resize one stored original to fit ``maxDimension`` × ``maxDimension`` and wait for it."""
    rt: Runtime = request.app.state.rt
    renders: Renders = request.app.state.renders
    key = validate_key(body.key)
    variant = invoke_variant(body.max_dimension)

    async def work() -> dict[str, Any]:
        return await invoke_key(rt.stores, renders.render, key, body.max_dimension)

    try:
        result = await renders.once(f"invoke:{variant.name}:{key}", work)
    except Busy:
        raise HTTPException(503, "every render slot is busy; retry shortly",
                            headers={"Retry-After": "1"}) from None  # fmt: skip
    except PixpipeError as exc:
        body_ = {"detail": exc.message, "kind": exc.kind.value}
        return JSONResponse(body_, _STATUS.get(exc.kind, 422))
    return {**result, "url": f"{base_url(request)}/images/{quote(result['resultKey'])}"}


__all__ = ["invoke_key", "invoke_variant", "router"]
