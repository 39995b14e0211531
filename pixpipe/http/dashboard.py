"""What the dashboard draws and the rest of the API does not give: read-only, with the API key.

- ``GET /v1/stats``: originals processed and failed, and processing-time percentiles, per
  interval over the last minutes. From the ``image.processed`` / ``image.failed`` events this
  API process sees (every worker's, as ``metrics.py`` counts them), kept in a ring in memory:
  ``BUCKET_S`` buckets for ``KEEP_S``, at most ``SAMPLES`` times each; empty at start.
- ``GET /v1/queues``: each durable consumer's backlog, as ``/metrics`` reads it from
  JetStream (at most every ``metrics.REFRESH_S``, shared with the scrapes).
- ``GET /v1/batches``: the batches of ``pixpipe-batches`` with their counts, newest first.
- ``GET /v1/reprocess``: backfill runs: those started on this API process with their progress,
  rate and ETA; the others the ``pixpipe-reprocess`` bucket remembers, with their state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from pydantic import BaseModel, Field

from .. import bus
from ..events import SUBJECT_IMAGE_FAILED, SUBJECT_IMAGE_PROCESSED
from ..pipeline.backfill_docs import RunRecord
from ..pipeline.orders import documents as batch_docs
from . import backfills
from .auth import AUTH
from .metrics import Metrics, outcome
from .models import Problem
from .orders import Batch

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ..pipeline.runtime import Runtime

BUCKET_S = 10
KEEP_S = 3600
SAMPLES = 256  # processing times kept per bucket; past that, a uniform sample of them
_GONE = (KeyNotFoundError, KeyDeletedError)
_AUTH_ONLY: dict[int | str, dict[str, Any]] = {401: {"model": Problem}}


# ---- the ring of counts and processing times ----
@dataclass(slots=True)
class _Bucket:
    processed: int = 0
    failed: int = 0
    timed: int = 0  # processing times seen (``seconds`` keeps at most ``SAMPLES`` of them)
    seconds: list[float] = field(default_factory=list)


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least ``q`` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(max(1, math.ceil(q * len(ordered))), len(ordered))
    return round(ordered[rank - 1], 3)


class Ring:
    """Counts and processing times per ``BUCKET_S`` seconds; only the last ``KEEP_S`` kept,
    so its memory is bounded whatever the traffic."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.since = clock()
        self.buckets: dict[int, _Bucket] = {}
        self._random = random.Random(0)

    def _bucket(self, now: float) -> _Bucket:
        start = int(now // BUCKET_S) * BUCKET_S
        found = self.buckets.get(start)
        if found is None:
            found = self.buckets[start] = _Bucket()
            for old in [t for t in self.buckets if t <= start - KEEP_S]:
                del self.buckets[old]
        return found

    def processed(self, seconds: float | None, now: float | None = None) -> None:
        """One original rendered, in ``seconds`` (when the event says)."""
        bucket = self._bucket(self.clock() if now is None else now)
        bucket.processed += 1
        if seconds is None:
            return
        bucket.timed += 1
        if len(bucket.seconds) < SAMPLES:
            bucket.seconds.append(seconds)
        elif (slot := self._random.randrange(bucket.timed)) < SAMPLES:
            bucket.seconds[slot] = seconds  # reservoir sampling: each time kept alike

    def failed(self, now: float | None = None) -> None:
        self._bucket(self.clock() if now is None else now).failed += 1

    def on_event(self, subject: str, data: bytes) -> None:
        """Count one ``image.processed`` / ``image.failed`` event."""
        found = outcome(subject, data)
        if found is not None and found[0] == "processed":
            self.processed(found[1])
        elif found is not None:
            self.failed()

    def series(self, minutes: int, step: int, now: float | None = None) -> dict[str, Any]:
        """The last ``minutes`` in intervals of ``step`` seconds (a multiple of ``BUCKET_S``),
        oldest first; the last interval is the current one, so far."""
        now = self.clock() if now is None else now
        count = max(1, minutes * 60 // step)
        first = int(now // step) * step - (count - 1) * step
        groups: list[list[_Bucket]] = [[] for _ in range(count)]
        for start, bucket in self.buckets.items():
            if first <= start <= now:
                groups[min((start - first) // step, count - 1)].append(bucket)
        points = [_summary(group, step) | {"t": first + i * step} for i, group in enumerate(groups)]
        # The last minute: the current bucket and the five before it (50 to 60 s of events).
        minute = int(now // BUCKET_S) * BUCKET_S - 60 + BUCKET_S
        recent = [b for t, b in self.buckets.items() if minute <= t <= now]
        return {
            "step_s": step, "minutes": minutes, "now": round(now, 3), "since": round(self.since, 3),
            "points": points,
            "window": _summary([b for g in groups for b in g], count * step),
            "last_minute": _summary(recent, max(now - minute, BUCKET_S)),
        }  # fmt: skip


def _summary(buckets: list[_Bucket], seconds: float) -> dict[str, Any]:
    processed = sum(b.processed for b in buckets)
    times = [s for b in buckets for s in b.seconds]
    return {
        "processed": processed, "failed": sum(b.failed for b in buckets),
        "per_min": round(processed * 60 / seconds, 2),
        "p50_s": _percentile(times, 0.5), "p95_s": _percentile(times, 0.95),
    }  # fmt: skip


def ring_of(app: FastAPI) -> Ring:
    """The app's ring (made here if the lifespan, which feeds it, has not run)."""
    if not hasattr(app.state, "stats"):
        app.state.stats = Ring()
    ring: Ring = app.state.stats
    return ring


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Feed the ring from the events (plain subscriptions: every API process sees all)."""
    ring, rt = ring_of(app), app.state.rt

    async def on_message(msg: Msg) -> None:
        ring.on_event(msg.subject, msg.data)

    subscriptions = [
        await rt.nc.subscribe(subject, cb=on_message)
        for subject in (SUBJECT_IMAGE_PROCESSED, SUBJECT_IMAGE_FAILED)
    ]
    try:
        yield
    finally:
        for sub in subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


router = APIRouter(tags=["dashboard"], lifespan=_lifespan)


# ---- response bodies ----
class Summary(BaseModel):
    processed: int
    failed: int
    per_min: float = Field(description="Processed per minute over the interval.")
    p50_s: float | None = Field(description="Median processing time, seconds (null: none).")
    p95_s: float | None


class Interval(Summary):
    t: int = Field(description="Its start, in Unix seconds.")


class Stats(BaseModel):
    step_s: int
    minutes: int
    now: float
    since: float = Field(description="When this API process began counting (Unix seconds).")
    points: list[Interval] = Field(description="Oldest first; the last one is under way.")
    window: Summary = Field(description="All of ``points`` together.")
    last_minute: Summary = Field(description="The last 50 to 60 seconds.")


class Queue(BaseModel):
    consumer: str
    stream: str
    pending: int | None = Field(description="Not yet delivered (null: not read yet).")
    ack_pending: int | None = Field(description="Delivered, not yet acknowledged.")


class BatchRow(Batch):
    created: datetime | None = None
    updated: datetime | None = None


class Run(BaseModel):
    run: str
    state: Literal["running", "done", "unfinished"] = Field(
        description="unfinished: a run started elsewhere that did not finish (yet)."
    )
    started_here: bool = Field(description="Started on this API process: progress is known.")
    generation: int | None = None
    variants: list[str] | None = None
    prefix: str | None = None
    missing_only: bool | None = None
    listed: int | None = Field(None, description="Originals listed so far.")
    listing_done: bool | None = None
    done: int | None = None
    skipped: int | None = None
    failed: int | None = None
    seconds: float | None = None
    rate_per_s: float | None = Field(None, description="Originals finished per second.")
    eta_s: float | None = Field(None, description="At this rate (a floor while listing).")


# ---- routes ----
@router.get("/v1/stats", response_model=Stats, dependencies=AUTH, responses=_AUTH_ONLY)
async def stats(
    request: Request,
    minutes: Annotated[int, Query(ge=1, le=KEEP_S // 60, description="How far back.")] = 15,
    step: Annotated[int, Query(ge=BUCKET_S, le=600, multiple_of=BUCKET_S,
                               description="Seconds per interval.")] = 30,
) -> dict[str, Any]:  # fmt: skip
    """Throughput and processing times over the last ``minutes``, per ``step`` seconds,
    counted by this API process since it started (every worker's events)."""
    return ring_of(request.app).series(minutes, step)


@router.get("/v1/queues", response_model=list[Queue], dependencies=AUTH, responses=_AUTH_ONLY)
async def queues(request: Request) -> list[dict[str, Any]]:
    """Each durable consumer's backlog, as ``/metrics`` has it (read at most every 5 s)."""
    metrics: Metrics = request.app.state.metrics
    await metrics.refresh(request.app.state.rt)

    def gauge(name: str, consumer: str) -> int | None:
        value = metrics.registry.get_sample_value(name, {"consumer": consumer})
        return None if value is None else int(value)

    return [
        {"consumer": name, "stream": consumer.stream,
         "pending": gauge("pixpipe_consumer_pending", name),
         "ack_pending": gauge("pixpipe_consumer_ack_pending", name)}
        for name, consumer in bus.CONSUMERS.items()
    ]  # fmt: skip


@router.get("/v1/batches", response_model=list[BatchRow], response_model_exclude_none=True,
            dependencies=AUTH, responses=_AUTH_ONLY, tags=["batches"])  # fmt: skip
async def batches(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200, description="At most this many.")] = 20,
    state: Annotated[Literal["open", "processing", "done"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    """The batches the bus keeps (for ``MAX_AGE_S``), newest first, with their counts."""
    rt: Runtime = request.app.state.rt
    kv = await batch_docs.bucket(rt)

    async def one(name: str) -> batch_docs.Batch | None:
        with contextlib.suppress(*_GONE):
            entry = await kv.get(name)
            return batch_docs.Batch.from_json(entry.value) if entry.value else None
        return None

    docs = [d for d in await asyncio.gather(*map(one, await bus.kv_keys(kv, "b.>"))) if d]
    docs = [d for d in docs if state is None or d.state == state]
    docs.sort(key=lambda d: (d.created, d.id), reverse=True)

    async def row(doc: batch_docs.Batch) -> dict[str, Any]:
        counter = await batch_docs.get_counter(kv, doc.id) if doc.state == "processing" else None
        return batch_docs.public(doc, counter[0] if counter else None) | {
            "created": doc.created, "updated": doc.updated or doc.created,  # never changed yet
        }  # fmt: skip

    return list(await asyncio.gather(*map(row, docs[:limit])))


@router.get("/v1/reprocess", response_model=list[Run], response_model_exclude_none=True,
            dependencies=AUTH, responses=_AUTH_ONLY, tags=["reprocess"])  # fmt: skip
async def runs(request: Request) -> list[dict[str, Any]]:
    """Backfill runs: this process's (newest first) with progress, rate and ETA, then those
    started elsewhere (``pixpipe reprocess``, another API) that the bus remembers."""
    here = [_progress(report, running) for report, running in backfills.started_here()]
    known = {r["run"] for r in here}
    kv = await request.app.state.rt.js.key_value(bus.REPROCESS_BUCKET)
    elsewhere = []
    for name in await bus.kv_keys(kv, f"{RunRecord.key_for('')}>"):
        run = name.removeprefix(RunRecord.key_for(""))
        if run in known:
            continue
        with contextlib.suppress(*_GONE):
            record = RunRecord.from_json((await kv.get(name)).value or b"{}")
            elsewhere.append({"run": run, "generation": record.generation, "started_here": False,
                              "state": "done" if record.complete else "unfinished"})  # fmt: skip
    return here + elsewhere


def _progress(report: dict[str, Any], running: bool) -> dict[str, Any]:
    finished = report["done"] + report["skipped"] + report["failed"]
    rate = finished / report["seconds"] if report["seconds"] else 0.0
    left = max(report["listed"] - finished, 0)
    eta = 0.0 if report["state"] == "done" else (left / rate if rate else None)
    if report["state"] == "running" and not running:
        report["state"], eta = "unfinished", None  # its coordinator ended with an error
    return report | {
        "started_here": True, "rate_per_s": round(rate, 2),
        "eta_s": None if eta is None else round(eta, 1),
    }  # fmt: skip


__all__ = ["BUCKET_S", "KEEP_S", "SAMPLES", "Ring", "ring_of", "router"]
