"""Prometheus metrics at ``GET /metrics``, one registry per app.

Counts come from where they happen: uploads from the upload endpoints, processed/failed and
processing time from the ``image.processed`` / ``image.failed`` events on the bus (so an API
process counts the work of every worker in the cluster), consumer backlogs from JetStream at
scrape time, and on-the-fly transform outcomes from the transform endpoint.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from ..bus import CONSUMERS
from ..events import SUBJECT_IMAGE_FAILED, SUBJECT_IMAGE_PROCESSED

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ..pipeline.runtime import Runtime

router = APIRouter(tags=["operations"])
REFRESH_S = 5.0
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def outcome(subject: str, data: bytes) -> tuple[str, float | None, str] | None:
    """An ``image.processed`` / ``image.failed`` event as (outcome, seconds, failure kind);
    ``None`` for anything else."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if subject == SUBJECT_IMAGE_PROCESSED:
        ms = event.get("duration_ms")
        return "processed", ms / 1000 if isinstance(ms, int | float) else None, ""
    if subject == SUBJECT_IMAGE_FAILED:
        return "failed", None, str(event.get("kind", "transient"))
    return None


class Metrics:
    """The app's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.refreshed = -REFRESH_S  # when the consumers' backlogs were last read
        self.registry = r = CollectorRegistry()
        self.uploads = Counter("pixpipe_uploads", "Originals received over HTTP.", ["via"],
                               registry=r)  # fmt: skip
        self.processed = Counter("pixpipe_images_processed", "Originals rendered.", registry=r)
        self.failed = Counter("pixpipe_images_failed", "Originals that failed.", ["kind"],
                              registry=r)  # fmt: skip
        self.processing = Histogram(
            "pixpipe_processing_seconds", "Time to render and store every variant of one original.",
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.pending = Gauge("pixpipe_consumer_pending", "Messages not yet delivered.",
                             ["consumer"], registry=r)  # fmt: skip
        self.ack_pending = Gauge("pixpipe_consumer_ack_pending", "Messages delivered, not acked.",
                                 ["consumer"], registry=r)  # fmt: skip
        self.transforms = Counter("pixpipe_transforms", "On-the-fly transform requests.",
                                  ["result"], registry=r)  # fmt: skip
        self.transform_cache_hits = Counter(
            "pixpipe_transform_cache_hits", "Transforms served from the cache store.", registry=r
        )
        self.transform_seconds = Histogram(
            "pixpipe_transform_seconds", "Time to render one uncached transform.",
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        for kind in ("corrupt", "unsupported", "too_large", "missing", "transient"):
            self.failed.labels(kind)
        for result in ("hit", "miss", "busy", "error"):
            self.transforms.labels(result)
        for via in ("api", "presigned"):
            self.uploads.labels(via)
        self._subscriptions: list[Any] = []

    def on_event(self, subject: str, data: bytes) -> None:
        """Count one ``image.processed`` / ``image.failed`` event."""
        found = outcome(subject, data)
        if found is None:
            return
        if found[0] == "processed":
            self.processed.inc()
            if found[1] is not None:
                self.processing.observe(found[1])
        else:
            self.failed.labels(found[2]).inc()

    async def start(self, rt: Runtime) -> None:
        """Listen to the events (plain subscriptions: every API process sees every event)."""

        async def on_message(msg: Msg) -> None:
            self.on_event(msg.subject, msg.data)

        for subject in (SUBJECT_IMAGE_PROCESSED, SUBJECT_IMAGE_FAILED):
            self._subscriptions.append(await rt.nc.subscribe(subject, cb=on_message))

    async def stop(self) -> None:
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subscriptions.clear()

    async def refresh(self, rt: Runtime) -> None:
        """Read the consumers' backlogs from JetStream at scrape time, at most every
        ``REFRESH_S``: a scraper (or anyone: ``/metrics`` is public) hammering it costs the bus
        one round of requests per period, not one per scrape."""
        now = time.monotonic()
        if now - self.refreshed < REFRESH_S:
            return
        self.refreshed = now
        for name, consumer in CONSUMERS.items():
            try:
                info = await rt.js.consumer_info(consumer.stream, name, timeout=2)
            except Exception:  # bus unreachable: keep the last values, /readyz tells why
                continue
            self.pending.labels(name).set(info.num_pending or 0)
            self.ack_pending.labels(name).set(info.num_ack_pending or 0)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format: uploads, processed, failed by kind, processing seconds,
    consumer backlogs, transform outcomes and cache hits."""
    collected: Metrics = request.app.state.metrics
    await collected.refresh(request.app.state.rt)
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["REFRESH_S", "Metrics", "outcome", "router"]
