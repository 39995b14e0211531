"""Backfills: ``POST /v1/reprocess`` starts one in the background, ``GET /v1/reprocess/{run}``
follows it (the logic is ``pipeline/backfill.py``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from ..logs import log
from ..pipeline import backfill
from ..pipeline.runtime import Runtime
from ..recipe import RecipeError
from ..storage import BadKey
from .auth import AUTH
from .models import Problem

router = APIRouter(tags=["reprocess"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 404, 409)
}
_RUNS: dict[str, backfill.Report] = {}  # backfills started by this process, by run
_RUNNING: dict[str, asyncio.Task[Any]] = {}


class Backfill(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: list[str] | None = Field(None, description="Variant names (default: all).")
    prefix: str = Field("", description="Only originals whose key starts with this.")
    missing_only: bool = Field(False, description="Skip originals whose variant file exists.")
    page_size: Annotated[int, Field(ge=1, le=10_000)] = backfill.PAGE_SIZE


@router.post("/v1/reprocess", status_code=202, dependencies=AUTH, responses=_ERRORS,
             tags=["reprocess"])  # fmt: skip
async def start_reprocess(request: Request, body: Backfill) -> dict[str, Any]:
    """Backfill: give every original under ``prefix`` the named variants (all by default),
    leaving the others alone. Runs in the background; follow it at ``/v1/reprocess/{run}``.
    Asking again resumes the same run, skipping what is done."""
    rt: Runtime = request.app.state.rt
    try:
        recipe = backfill.plan(rt, body.variants or ())
        backfill.check_prefix(body.prefix)
    except (RecipeError, BadKey) as exc:
        raise HTTPException(400, str(exc)) from None
    run = backfill.run_name(recipe, body.prefix, body.missing_only)
    if run in _RUNNING:  # already under way here: its progress
        return _RUNS[run].to_dict()

    def progress(report: backfill.Report) -> None:
        _RUNS[run] = report

    task = asyncio.create_task(backfill.coordinate(
        rt, recipe.names, body.prefix, body.missing_only, page_size=body.page_size,
        on_progress=progress,
    ))  # fmt: skip
    _RUNNING[run] = task
    task.add_done_callback(lambda t: _finished(run, t))
    _RUNS[run] = backfill.Report(run, 0, recipe.names, body.prefix, body.missing_only)
    return _RUNS[run].to_dict()


def started_here() -> list[tuple[dict[str, Any], bool]]:
    """The runs this process started, newest first: each report and whether it still runs."""
    return [(report.to_dict(), run in _RUNNING) for run, report in reversed(_RUNS.items())]


def _finished(run: str, task: asyncio.Task[Any]) -> None:
    _RUNNING.pop(run, None)
    if not task.cancelled() and task.exception() is not None:
        log.error("reprocess %s failed: %r", run, task.exception())


@router.get("/v1/reprocess/{run}", responses=_ERRORS, tags=["reprocess"])
async def reprocess_state(run: str) -> dict[str, Any]:
    """Progress of a backfill started on this API process."""
    if run not in _RUNS:
        raise HTTPException(404, f"no backfill {run!r} started here")
    return _RUNS[run].to_dict()


__all__ = ["router", "started_here"]
