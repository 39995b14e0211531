"""Orders (batches): ``POST /v1/batches``, ``GET /v1/batches/{id}``, and the hold that
``POST /v1/images?batch=ID`` puts on an upload (the logic is ``pipeline/orders/``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from ..pipeline import orders
from ..pipeline.runtime import Runtime
from .auth import AUTH
from .models import Problem

router = APIRouter(tags=["batches"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 404, 409)
}
MAX_DEADLINE_S = 30 * 24 * 3600.0


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


@contextlib.asynccontextmanager
async def _http_errors() -> AsyncIterator[None]:
    try:
        yield
    except orders.BatchError as exc:
        raise HTTPException(exc.status, str(exc)) from None


async def check_batch(rt: Runtime, batch_id: str, key: str) -> None:
    """Before an upload for ``batch_id`` is stored: 404 if unknown, 409 if no longer open;
    else ``key`` is marked held, so that nothing announces it before its batch is complete."""
    async with _http_errors():
        await orders.reserve(rt, batch_id, key)


async def hold_upload(rt: Runtime, batch_id: str, key: str) -> None:
    """Hold a stored upload in its batch (the last one releases it). Should the batch have
    closed meanwhile (its deadline passed), the original is processed on its own."""
    from ..pipeline.ingest import announce

    try:
        await orders.hold(rt, batch_id, key)
    except orders.BatchConflict:
        await announce(rt, key)


@router.post("/v1/batches", status_code=201, dependencies=AUTH, response_model=Batch,
             response_model_exclude_none=True, responses=_ERRORS)  # fmt: skip
async def create_batch(request: Request, body: NewBatch) -> dict[str, Any]:
    """Open a batch: its uploads (``POST /v1/images?key=K&batch=ID``) are held until all
    ``expected`` are in (or ``deadline_s`` passes); ``pixpipe.batch.done`` tells when it is."""
    async with _http_errors():
        doc = await orders.create(request.app.state.rt, body.id, body.expected, body.deadline_s)
    return orders.public(doc)


@router.get("/v1/batches/{batch_id}", response_model=Batch, response_model_exclude_none=True,
            responses=_ERRORS)  # fmt: skip
async def batch_state(request: Request, batch_id: str) -> dict[str, Any]:
    """A batch's state and counts."""
    async with _http_errors():
        state = await orders.status(request.app.state.rt, batch_id)
    if state is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return state


__all__ = ["check_batch", "hold_upload", "router"]
