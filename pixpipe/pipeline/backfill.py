"""Backfills: give the stored originals (all, or those under a prefix) some of the recipe's
variants — usually a new one — through the bus, without touching the others.

Two tiers, like a Lambda fan-out: the **coordinator** (``pixpipe reprocess``,
``POST /v1/reprocess``) only lists the originals store page by page and publishes chunks of
keys on ``pixpipe.reprocess``; the workers' ``reprocess`` consumer does the pixels, rendering
each original with the recipe restricted to the requested variants.

Safe to interrupt and rerun. A run is named by what it asks (the variants' specs, the prefix,
``missing_only``); each chunk's outcome is kept in the KV bucket ``pixpipe-reprocess`` under
``{run}-{generation}.{chunk}``, and a rerun of an unfinished run publishes only the chunks
without one (a rerun of a finished run is a new generation that looks at everything again).
Chunks go out with ``Nats-Msg-Id`` = ``{run}-{generation}.{chunk}``, and a worker skips an
original whose variant file is there and was made from its etag with this spec, so
redeliveries and overlapping runs re-render nothing. The chunk job, its outcome and the
run's record are the frozen models of ``backfill_docs.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.js.errors import KeyNotFoundError

from .. import bus
from ..errors import PixpipeError
from ..jobs.backfill import backfill, fingerprint
from ..logs import log
from ..recipe import Recipe
from ..storage import BadKey, validate_key
from .backfill_docs import ChunkJob, ChunkOutcome, Failure, Original, RunRecord
from .runtime import Runtime

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.kv import KeyValue

    from ..jobs.pool import RenderPool
    from ..storage import Meta

SUBJECT = "pixpipe.reprocess"
PAGE_SIZE = 1000
CHUNK_SIZE = 16
_PER_CHUNK = 2  # originals of one chunk in flight: one downloads while one renders
_MAX_FAILURES_KEPT = 100


def run_name(recipe: Recipe, prefix: str, missing_only: bool) -> str:
    """The run's name: the same request gives the same name, so a rerun resumes it."""
    text = json.dumps([[fingerprint(v) for v in recipe], prefix, missing_only])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _chunk_name(run: str, originals: Sequence[Original]) -> str:
    text = json.dumps([run, [[o.key, o.etag] for o in originals]])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(slots=True)
class Report:
    """A run's progress: originals listed, and the outcome of each finished one."""

    run: str
    generation: int
    variants: tuple[str, ...]
    prefix: str
    missing_only: bool
    listed: int = 0  # originals seen in the listing so far
    pages: int = 0
    published: int = 0  # chunks published by this invocation
    resumed: int = 0  # originals in chunks an earlier, interrupted run already finished
    done: int = 0  # rendered
    skipped: int = 0  # already up to date
    failed: int = 0
    listing_done: bool = False
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed

    @property
    def complete(self) -> bool:
        return self.listing_done and self.finished >= self.listed

    @property
    def images_per_s(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["variants"] = list(self.variants)
        out["state"] = "done" if self.complete else "running"
        out["images_per_s"] = round(self.images_per_s, 2)
        out["seconds"] = round(self.seconds, 3)
        return out


def check_prefix(prefix: str) -> str:
    """A key prefix: a key, or the start of one (``users/``, ``users/4``); ``BadKey`` if not."""
    if prefix.strip("/"):
        validate_key(prefix.rstrip("/") if prefix.endswith("/") else prefix)
    elif prefix:
        raise BadKey(f"prefix must not start with '/' (got {prefix!r})")
    return prefix


def plan(rt: Runtime, variants: Sequence[str] = ()) -> Recipe:
    """The recipe restricted to ``variants`` (all of it when none are named)."""
    return rt.recipe.only(variants) if variants else rt.recipe


async def coordinate(
    rt: Runtime,
    variants: Sequence[str] = (),
    prefix: str = "",
    missing_only: bool = False,
    *,
    page_size: int = PAGE_SIZE,
    chunk_size: int = CHUNK_SIZE,
    on_progress: Callable[[Report], None] | None = None,
    on_page: Callable[[Report], None] | None = None,
) -> Report:
    """List the originals under ``prefix`` a page at a time, publish a job per chunk not yet
    finished, and wait until every chunk has an outcome. Cancel it at any time: a rerun with
    the same request picks up where it stopped."""
    recipe = plan(rt, variants)
    check_prefix(prefix)
    kv = await rt.js.key_value(bus.REPROCESS_BUCKET)
    name = run_name(recipe, prefix, missing_only)
    generation = await _generation(kv, name)
    run = f"{name}-{generation}"
    report = Report(name, generation, recipe.names, prefix, missing_only)
    started = time.monotonic()
    outcomes: dict[str, ChunkOutcome] = {}  # chunk → its outcome; ids only, never keys
    ours: set[str] = set()
    changed = asyncio.Event()

    def tally() -> None:
        report.done = report.skipped = report.failed = 0
        report.failures = []
        for chunk in ours & outcomes.keys():
            outcome = outcomes[chunk]
            report.done += outcome.done
            report.skipped += outcome.skipped
            report.failed += len(outcome.failed)
            room = _MAX_FAILURES_KEPT - len(report.failures)
            report.failures += [f.model_dump() for f in outcome.failed[: max(room, 0)]]
        report.seconds = time.monotonic() - started
        if on_progress is not None:
            on_progress(report)

    async def follow() -> None:
        watcher = await kv.watch(f"{run}.>")
        try:
            async for entry in watcher:
                if entry is not None and entry.value:
                    outcomes[entry.key.split(".", 1)[1]] = ChunkOutcome.from_json(entry.value)
                    changed.set()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    following = asyncio.create_task(follow())
    try:
        specs = ChunkJob.specs(recipe)
        async for page in rt.stores.originals.list(prefix, page_size=page_size):
            report.pages += 1
            report.listed += len(page)
            for start in range(0, len(page), chunk_size):
                await _publish(rt, kv, report, run, specs, page[start : start + chunk_size],
                               outcomes, ours)  # fmt: skip
            tally()
            if on_page is not None:
                on_page(report)
        report.listing_done = True
        tally()
        while not report.complete:
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)
            tally()
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
            await following
    done = RunRecord(generation=generation, complete=True)
    await kv.put(RunRecord.key_for(name), done.to_json())
    log.info("reprocess %s: %d done, %d up to date, %d failed", run, report.done,
             report.skipped, report.failed)  # fmt: skip
    return report


async def _generation(kv: KeyValue, name: str) -> int:
    """The generation to run: the last one again if it did not finish, else the next."""
    try:
        last = RunRecord.from_json((await kv.get(RunRecord.key_for(name))).value or b"{}")
    except KeyNotFoundError:
        last = RunRecord()
    record = last.next()
    await kv.put(RunRecord.key_for(name), record.to_json())
    return record.generation


async def _publish(
    rt: Runtime,
    kv: KeyValue,
    report: Report,
    run: str,
    specs: tuple[dict[str, Any], ...],
    metas: Sequence[Meta],
    outcomes: dict[str, ChunkOutcome],
    ours: set[str],
) -> None:
    """Publish the chunk of ``metas`` unless an earlier invocation of the run finished it."""
    originals = tuple(Original(key=m.key, etag=m.etag) for m in metas)
    job = ChunkJob(run=run, chunk=_chunk_name(run, originals), variants=specs,
                   originals=originals, missing_only=report.missing_only)  # fmt: skip
    ours.add(job.chunk)
    if job.chunk not in outcomes:
        try:
            entry = await kv.get(job.key)
            outcomes[job.chunk] = ChunkOutcome.from_json(entry.value or b"{}")
        except KeyNotFoundError:
            pass
    if job.chunk in outcomes:
        report.resumed += len(originals)
        return
    await bus.publish(rt.js, SUBJECT, job.to_dict(), job.key)
    report.published += 1


class Reprocessor:
    """The workers' side: the ``reprocess`` consumer, sharing the worker's render pool."""

    def __init__(self, rt: Runtime, pool: RenderPool) -> None:
        self.rt = rt
        self.pool = pool
        self.ctx = rt.context(pool.render)  # the full recipe: what is current on upload
        self.kv: KeyValue | None = None
        self.beat_every = bus.heartbeat_every("reprocess", rt.settings.retry)

    async def run(self, stop: asyncio.Event) -> None:
        # A chunk per render process, two originals of each in flight: the pool stays full.
        await bus.consume(
            self.rt.js, "reprocess", self.handle, self.give_up, retry=self.rt.settings.retry,
            concurrency=self.pool.workers, stop=stop,
        )  # fmt: skip

    async def handle(self, msg: Msg) -> None:
        """Backfill a chunk's originals and record its outcome; a transient failure of any
        of them brings the whole chunk back."""
        job = ChunkJob.from_json(msg.data)
        recipe = job.recipe()
        slots = asyncio.Semaphore(_PER_CHUNK)

        async def one(original: Original) -> bool | Failure:
            async with slots:
                try:
                    return await backfill(self.ctx, original.key, recipe, job.missing_only)
                except PixpipeError as exc:
                    if not exc.kind.permanent:
                        raise
                    return Failure.of(original.key, exc)

        async with bus.heartbeat(msg, self.beat_every):
            results = await asyncio.gather(*(one(o) for o in job.originals),
                                           return_exceptions=True)  # fmt: skip
        for result in results:
            if isinstance(result, BaseException):
                raise result  # the chunk comes back; the originals finished now are skipped
        outcome = ChunkOutcome(
            done=sum(r is True for r in results), skipped=sum(r is False for r in results),
            failed=tuple(r for r in results if isinstance(r, Failure)),
        )  # fmt: skip
        await self._record(job, outcome)

    async def give_up(self, msg: Msg, error: PixpipeError, attempts: int) -> None:
        """Out of retries: every original of the chunk failed with ``error``."""
        job = ChunkJob.from_json(msg.data)
        failed = tuple(Failure.of(o.key, error) for o in job.originals)
        await self._record(job, ChunkOutcome(failed=failed))

    async def _record(self, job: ChunkJob, outcome: ChunkOutcome) -> None:
        if self.kv is None:
            self.kv = await self.rt.js.key_value(bus.REPROCESS_BUCKET)
        await self.kv.put(job.key, outcome.to_json())


async def run_reprocess_jobs(rt: Runtime, pool: RenderPool, stop: asyncio.Event) -> None:
    """The ``reprocess`` consumer of a worker process."""
    await Reprocessor(rt, pool).run(stop)


__all__ = [
    "CHUNK_SIZE",
    "PAGE_SIZE",
    "SUBJECT",
    "Report",
    "Reprocessor",
    "check_prefix",
    "coordinate",
    "fingerprint",
    "plan",
    "run_name",
    "run_reprocess_jobs",
]
