"""The cost model over HTTP: ``GET /v1/cost`` (the figures) and ``GET /cost`` (a page that
charts them). Measured figures come from a quick measurement of one synthetic photo with the
configured recipe, made on the first request and kept in memory for the app's life.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse

from ..config import Limits
from ..cost import CostOptions, Prices, Sample, price, quick_sample
from ..recipe import DEFAULT_RECIPE, Recipe

STATIC = Path(__file__).parent / "static"
router = APIRouter(tags=["cost"])


@router.get("/v1/cost", responses={400: {"description": "Options that do not go together."}})
async def cost(
    request: Request,
    images_per_day: Annotated[
        float, Query(ge=0, le=1e9, description="Originals per day.")
    ] = 10_000,
    seconds_per_image: Annotated[
        float | None,
        Query(gt=0, le=900, description="A stated duration (with memory_mb): no measuring."),
    ] = None,
    memory_mb: Annotated[int | None, Query(ge=128, le=10240)] = None,
    ephemeral_mb: Annotated[int, Query(ge=512, le=10240)] = 512,
    peak_concurrency: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    free_tier: bool = False,
    servers_monthly: Annotated[float | None, Query(ge=0, le=1e9)] = None,
) -> dict[str, Any]:
    """What the workload costs on Lambda at each memory size and on always-on containers.

    The same figures as ``pixpipe cost --json``, priced with the default price table.
    """
    recipe, limits = _recipe_and_limits(request.app)
    try:
        options = CostOptions(
            recipe, limits, Prices(free_tier=free_tier, servers_monthly=servers_monthly),
            images_per_day=images_per_day, seconds_per_image=seconds_per_image,
            memory_mb=memory_mb, ephemeral_mb=ephemeral_mb, peak_concurrency=peak_concurrency,
            chart=None,
        )  # fmt: skip
    except ValueError as exc:
        # The options' errors name command-line flags: name the query parameters instead.
        flag = re.compile(r"--([a-z-]+)")
        raise HTTPException(400, flag.sub(lambda m: m[1].replace("-", "_"), str(exc))) from None
    sample = None if options.stated else await _sample(request.app, recipe, limits)
    return price(options, sample).to_dict()


@router.get("/cost", include_in_schema=False)
async def cost_page() -> FileResponse:
    return FileResponse(STATIC / "cost.html", headers={"Cache-Control": "no-cache"})


def _recipe_and_limits(app: FastAPI) -> tuple[Recipe, Limits]:
    rt = getattr(app.state, "rt", None)
    if rt is None:
        return DEFAULT_RECIPE, Limits()
    return rt.settings.recipe, rt.settings.limits.frozen()


async def _sample(app: FastAPI, recipe: Recipe, limits: Limits) -> Sample:
    """The quick measurement for ``recipe``: made once (one at a time), then remembered."""
    if not hasattr(app.state, "cost_samples"):
        app.state.cost_samples, app.state.cost_lock = {}, asyncio.Lock()
    samples: dict[Recipe, Sample] = app.state.cost_samples
    async with app.state.cost_lock:
        if recipe not in samples:
            samples[recipe] = await anyio.to_thread.run_sync(quick_sample, recipe, limits)
    return samples[recipe]

__all__ = [
    "STATIC",
    "cost",
    "cost_page",
    "router",
]
