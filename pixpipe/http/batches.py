"""Batches and backfills: ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST
/v1/reprocess``, ``GET /v1/reprocess/{run}``; and the hold that ``POST /v1/images?batch=ID``
puts on an upload (the logic is in ``pixpipe.batches`` and ``pixpipe.reprocess``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from .. import batches, reprocess
from ..recipe import RecipeError
from ..service import Runtime, log
from ..stores import BadKey
from .auth import AUTH
from .models import Problem

router = APIRouter(tags=["batches"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 404, 409)
}
MAX_DEADLINE_S = 30 * 24 * 3600.0
_RUNS: dict[str, reprocess.Report] = {}  # backfills started by this process, by run
_RUNNING: dict[str, asyncio.Task[Any]] = {}


class NewBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"id": "order-1042", "expected": 120}]}
    )
    id: str = Field(description="Your name for the batch (an order number).")
    expected: Annotated[int, Field(ge=1, description="How many originals it will have.")]
    deadline_s: Annotated[
        float | None,
        Field(gt=0, le=MAX_DEADLINE_S, description="After this many seconds, process what "
              "has arrived (at most 30 days)."),
    ] = None  # fmt: skip


class Batch(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "order-1042", "expected": 120, "received": 120, "state": "processing",
        "done": 64, "failed": 1,
    }]})  # fmt: skip
    id: str
    expected: int
    received: int
    state: str = Field(description="open | processing | done")
    done: int
    failed: int
    missing: int | None = Field(None, description="Never arrived before the deadline.")
    deadline: str | None = None


class Backfill(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: list[str] | None = Field(None, description="Variant names (default: all).")
    prefix: str = Field("", description="Only originals whose key starts with this.")
    missing_only: bool = Field(False, description="Skip originals whose variant file exists.")
    page_size: Annotated[int, Field(ge=1, le=10_000)] = reprocess.PAGE_SIZE


@contextlib.asynccontextmanager
async def _http_errors() -> AsyncIterator[None]:
    try:
        yield
    except batches.BatchError as exc:
        raise HTTPException(exc.status, str(exc)) from None


async def check_batch(rt: Runtime, batch_id: str, key: str) -> None:
    """Before an upload for ``batch_id`` is stored: 404 if unknown, 409 if no longer open;
    else ``key`` is marked held, so that nothing announces it before its batch is complete."""
    async with _http_errors():
        await batches.reserve(rt, batch_id, key)


async def hold_upload(rt: Runtime, batch_id: str, key: str) -> None:
    """Hold a stored upload in its batch (the last one releases it). Should the batch have
    closed meanwhile (its deadline passed), the original is processed on its own."""
    from ..ingest import announce

    try:
        await batches.hold(rt, batch_id, key)
    except batches.BatchConflict:
        await announce(rt, key)


@router.post("/v1/batches", status_code=201, dependencies=AUTH, response_model=Batch,
             response_model_exclude_none=True, responses=_ERRORS)  # fmt: skip
async def create_batch(request: Request, body: NewBatch) -> dict[str, Any]:
    """Open a batch: its uploads (``POST /v1/images?key=K&batch=ID``) are held until all
    ``expected`` are in (or ``deadline_s`` passes); ``pixpipe.batch.done`` tells when it is."""
    async with _http_errors():
        doc = await batches.create(request.app.state.rt, body.id, body.expected, body.deadline_s)
    return batches.public(doc)


@router.get("/v1/batches/{batch_id}", response_model=Batch, response_model_exclude_none=True,
            responses=_ERRORS)  # fmt: skip
async def batch_state(request: Request, batch_id: str) -> dict[str, Any]:
    """A batch's state and counts."""
    async with _http_errors():
        state = await batches.status(request.app.state.rt, batch_id)
    if state is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return state


@router.post("/v1/reprocess", status_code=202, dependencies=AUTH, responses=_ERRORS,
             tags=["reprocess"])  # fmt: skip
async def start_reprocess(request: Request, body: Backfill) -> dict[str, Any]:
    """Backfill: give every original under ``prefix`` the named variants (all by default),
    leaving the others alone. Runs in the background; follow it at ``/v1/reprocess/{run}``.
    Asking again resumes the same run, skipping what is done."""
    rt: Runtime = request.app.state.rt
    try:
        recipe = reprocess.plan(rt, body.variants or ())
        reprocess.check_prefix(body.prefix)
    except (RecipeError, BadKey) as exc:
        raise HTTPException(400, str(exc)) from None
    run = reprocess.run_name(recipe, body.prefix, body.missing_only)
    if run in _RUNNING:  # already under way here: its progress
        return _RUNS[run].to_dict()

    def progress(report: reprocess.Report) -> None:
        _RUNS[run] = report

    task = asyncio.create_task(reprocess.coordinate(
        rt, recipe.names, body.prefix, body.missing_only, page_size=body.page_size,
        on_progress=progress,
    ))  # fmt: skip
    _RUNNING[run] = task
    task.add_done_callback(lambda t: _finished(run, t))
    _RUNS[run] = reprocess.Report(run, 0, recipe.names, body.prefix, body.missing_only)
    return _RUNS[run].to_dict()


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


__all__ = ["check_batch", "hold_upload", "router"]
