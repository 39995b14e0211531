"""Rendering in worker processes (pebble): a crash or a stall costs one image, never the
caller. Used by ``pixpipe process`` and by the pipeline's workers."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from concurrent.futures import TimeoutError
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from pebble import ProcessExpired, ProcessPool

from ..errors import Kind, PixpipeError, TimedOut
from ..limits import Limits
from ..recipe import Recipe

# Recycle a render process now and then: libvips and malloc arenas grow with odd inputs.
MAX_TASKS_PER_PROCESS = 500
# libvips stops a render at ``limits.max_seconds`` itself; a process still busy this much later
# (stuck outside libvips: a PDF, a HEIC) is stopped by the pool.
HARD_STOP_GRACE_S = 5.0
# How often a pending render checks that its pool still lives (see RenderPool._answer).
POOL_WATCH_S = 0.5


def init_process(threads: int, max_memory_mb: int = 0) -> None:
    """Per-process libvips setup: thread count, no operation cache (every original is new),
    and a ceiling on the memory it may allocate (``RLIMIT_DATA``: heap and private mappings,
    not the shared libraries), so one huge image fails alone instead of the machine."""
    if max_memory_mb > 0:
        ceiling = max_memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (ceiling, ceiling))
    os.environ["VIPS_CONCURRENCY"] = str(threads)
    import pyvips

    from .. import imaging  # noqa: F401  - hardens libvips before the first image

    pyvips.concurrency_set(threads)
    pyvips.cache_set_max(0)


def threads_per_process(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def start_pool(workers: int, initializer: Any = init_process, initargs: tuple[Any, ...] = ()):
    """A pebble process pool whose processes run ``initializer(*initargs)`` first.

    Spawned, not forked: a fork of a process whose libvips threads are running (a test, an
    app that rendered something itself) can inherit a held lock and hang forever.
    """
    return ProcessPool(
        max_workers=workers, max_tasks=MAX_TASKS_PER_PROCESS,
        initializer=initializer, initargs=initargs or (threads_per_process(workers),),
        context=multiprocessing.get_context("spawn"),
    )  # fmt: skip


def failure(exc: BaseException, limits: Limits) -> PixpipeError:
    """The kind of failure a finished future reports."""
    if isinstance(exc, PixpipeError):
        return exc
    if isinstance(exc, TimeoutError):
        return TimedOut(Kind.TRANSIENT, f"the render took longer than {limits.max_seconds:g} s "
                                        "(render process stopped)")  # fmt: skip
    if isinstance(exc, MemoryError):
        return PixpipeError(Kind.TOO_LARGE, f"the render needs more than the "
                                            f"{limits.max_memory_mb} MB a render process may use")
    if isinstance(exc, ProcessExpired):
        # A render process died (killed, out of memory, a libvips crash): try again.
        return PixpipeError(Kind.TRANSIENT, f"render process died (exit code {exc.exitcode})")
    if isinstance(exc, BrokenProcessPool):  # one died before taking its task: not the image's fault
        return PixpipeError(Kind.TRANSIENT, f"render processes failed ({exc}); will retry")
    return PixpipeError(Kind.CORRUPT, f"internal error: {type(exc).__name__}: {exc}")


def _render(data: bytes | Path, recipe: Recipe, limits: Limits, placeholder: bool) -> Any:
    from ..imaging import render

    if isinstance(data, Path):
        data = limits.read(data)
    return render(data, recipe, limits, placeholder=placeholder)


def _warm() -> None:
    """Nothing but the imports a first render would wait for."""
    from ..imaging import render  # noqa: F401


class RenderPool:
    """``await pool.render(data, recipe)`` in one of ``workers`` processes; ``data`` is the
    original's bytes, or the path of a local one (read by the render process itself)."""

    def __init__(self, workers: int, limits: Limits, stopping: asyncio.Event | None = None) -> None:
        self.workers = workers
        self.limits = limits
        self._stopping = stopping  # once set, a broken pool is not started again
        self._pool = self._start()
        self._restarting = asyncio.Lock()

    async def render(
        self, data: bytes | Path, recipe: Recipe, placeholder: bool = True
    ) -> Any:
        for last in (False, True):
            pool = await self._ready()
            future = pool.schedule(
                _render, args=(data, recipe, self.limits, placeholder),
                timeout=self.limits.max_seconds + HARD_STOP_GRACE_S,
            )  # fmt: skip
            try:
                return await self._answer(pool, future)
            except BrokenProcessPool as exc:  # the pool's fault, not the image's: once more
                if last:
                    raise failure(exc, self.limits) from None
                await self._ready(broken=pool)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                    raise
                raise failure(exc, self.limits) from None
        raise AssertionError("unreachable")

    @staticmethod
    async def _answer(pool: ProcessPool, future: Any) -> Any:
        """The task's result, or BrokenProcessPool if its pool broke without answering.

        pebble orphans a task that its scheduler thread registers just after the pool broke
        (a process died while idle): the task is never aborted, and would be awaited forever.
        """
        answer = asyncio.wrap_future(future)
        while not (await asyncio.wait({answer}, timeout=POOL_WATCH_S))[0]:
            if not pool.active:
                future.cancel()
                raise BrokenProcessPool("the render processes failed before taking the task")
        return answer.result()

    async def _ready(self, broken: ProcessPool | None = None) -> ProcessPool:
        """The pool to schedule on: a fresh one if it is given up (or is ``broken``)."""
        if self._pool.active and self._pool is not broken:
            return self._pool
        if self._stopping is not None and self._stopping.is_set():
            # Shutting down (a SIGTERM to the process group kills the render processes too):
            # starting new ones would hold the exit for their start and a join.
            raise PixpipeError(Kind.TRANSIENT, "render processes are stopping; will retry")
        async with self._restarting:
            if not self._pool.active or self._pool is broken:
                await asyncio.to_thread(self._restart)
        return self._pool

    def _restart(self) -> None:
        # pebble gives a pool up for good when a process dies before it took its task (killed
        # while starting, say): start a fresh one rather than fail every image after.
        broken, self._pool = self._pool, self._start()
        broken.stop()
        broken.join(timeout=10)

    def _start(self) -> ProcessPool:
        """A pool whose processes start now, in the background: the first image must not
        wait for their start (a second or more: the latency of a first upload)."""
        initargs = (threads_per_process(self.workers), self.limits.max_memory_mb)
        pool = start_pool(self.workers, init_process, initargs)
        pool.schedule(_warm)
        return pool

    def close(self) -> None:
        self._pool.stop()
        self._pool.join(timeout=10)

__all__ = [
    "HARD_STOP_GRACE_S",
    "MAX_TASKS_PER_PROCESS",
    "RenderPool",
    "failure",
    "init_process",
    "start_pool",
    "threads_per_process",
]
