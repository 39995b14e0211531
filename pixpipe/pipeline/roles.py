"""Running the roles: ``pixpipe up`` (everything on one machine), ``pixpipe worker`` and
``pixpipe api`` (the same roles apart, against a shared ``nats://`` bus and shared stores).

One asyncio process per role set. Pixels are rendered in a pool of processes (pebble
replaces one that dies, and its image is retried); a role that crashes is started again;
the embedded ``nats-server`` is restarted if it exits. SIGINT/SIGTERM set one stop event
that every loop watches; unfinished messages stay unacknowledged in JetStream and are
redelivered after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..bus import EmbeddedServer
from ..config import Settings
from ..jobs.pool import RenderPool
from ..logs import log
from .backfill import run_reprocess_jobs
from .backup import run_backup
from .deadletters import run_dead_letters
from .ingest import subscribe_s3, watch_folder
from .notify import run_notify
from .orders import run_batches
from .reconcile import run_reconcile
from .runtime import Runtime, runtime
from .worker import Worker


@dataclass(frozen=True, slots=True)
class Roles:
    worker: bool = True
    api: bool = True
    workers: int = 0  # render processes; 0 = one per core
    host: str = "127.0.0.1"
    port: int = 8000


async def serve(
    settings: Settings,
    roles: Roles,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Runtime, str], Awaitable[None] | None] | None = None,
) -> None:
    """Run ``roles`` until ``stop`` is set (or a signal arrives)."""
    stop = stop or asyncio.Event()
    _on_signals(stop)
    server = None
    if settings.bus.url.strip() == "embedded" and roles.worker and roles.api:
        server = await asyncio.to_thread(EmbeddedServer(settings.data_dir).start)
    try:
        async with runtime(settings) as rt:
            tasks = [asyncio.create_task(c) for c in _role_tasks(rt, roles, stop)]
            if server is not None:
                tasks.append(asyncio.create_task(_keep_alive(server, stop)))
            url = f"http://{roles.host}:{roles.port}"
            if roles.api:
                await _listening(roles, tasks)  # the printed URL must answer at once
            if on_ready is not None:
                maybe = on_ready(rt, url)
                if maybe is not None:
                    await maybe
            await _until_stopped(tasks, stop)
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


RoleStart = Callable[[], Awaitable[None]]
# Idle connections are kept longer than clients and load balancers keep theirs (httpx 5 s, an
# AWS ALB 60 s): a server closing first races a client reusing the connection, which then
# fails its request (uvicorn's default, 5 s, equals httpx's: the race seen in CI).
KEEP_ALIVE_S = 75


def _role_tasks(rt: Runtime, roles: Roles, stop: asyncio.Event) -> list[Awaitable[None]]:
    starts: dict[str, RoleStart] = {}
    if roles.worker:
        workers = roles.workers or os.cpu_count() or 1
        starts |= {
            "worker": lambda: _run_worker(rt, workers, stop),
            "backup": lambda: run_backup(rt, stop),
            "notify": lambda: run_notify(rt, stop),
            "dead letters": lambda: run_dead_letters(rt, stop),
            "batches": lambda: run_batches(rt, stop),
            "reconciler": lambda: run_reconcile(rt, stop),
        }
    if roles.api:
        starts |= {
            "api": lambda: _run_api(rt, roles, stop),
            "folder watcher": lambda: watch_folder(rt, stop),
        }
    return [_supervised(name, start, stop) for name, start in starts.items()]


async def _supervised(name: str, start: RoleStart, stop: asyncio.Event) -> None:
    """Run one role; if it crashes (a bus request timing out under load, a store outage, a
    bug), log it and start it again after a growing pause: one role's trouble never stops
    the others, and pixpipe keeps serving. A role that ends by itself (no folder to watch)
    stays ended."""
    pause = 1.0
    while not stop.is_set():
        try:
            await start()
            return
        except Exception:
            log.exception("role %s crashed; starting it again in %.0f s", name, pause)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
        pause = min(pause * 2, 30.0)


async def _run_worker(rt: Runtime, workers: int, stop: asyncio.Event) -> None:
    pool = RenderPool(workers, rt.settings.limits.frozen(), stopping=stop)
    try:
        # New uploads and backfill chunks share the render processes.
        await asyncio.gather(Worker(rt, pool).run(stop), run_reprocess_jobs(rt, pool, stop))
    finally:
        await asyncio.to_thread(pool.close)


async def _run_api(rt: Runtime, roles: Roles, stop: asyncio.Event) -> None:
    import uvicorn

    from ..http.app import create_app

    # lifespan: the app starts its metrics subscriptions and stops its render processes;
    # open event streams (SSE) get a few seconds to finish, then are cut.
    config = uvicorn.Config(
        create_app(rt), host=roles.host, port=roles.port, log_level="warning", lifespan="on",
        timeout_graceful_shutdown=3, timeout_keep_alive=KEEP_ALIVE_S,
    )  # fmt: skip
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    subscription = await subscribe_s3(rt)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()


async def _listening(roles: Roles, tasks: list[asyncio.Task[None]], timeout: float = 30.0) -> None:
    """Wait until the HTTP service accepts connections (or a role has crashed)."""
    host = "127.0.0.1" if roles.host in ("", "0.0.0.0", "::") else roles.host
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if any(t.done() and not t.cancelled() and t.exception() for t in tasks):
            return
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, roles.port)
            writer.close()
            return
        await asyncio.sleep(0.05)


async def _keep_alive(server: EmbeddedServer, stop: asyncio.Event) -> None:
    """Restart the embedded ``nats-server`` if it dies; clients reconnect by themselves."""
    while not stop.is_set():
        await asyncio.sleep(1.0)
        if server.process is not None and server.process.poll() is not None and not stop.is_set():
            log.warning("embedded nats-server exited (%s); restarting", server.process.returncode)
            await asyncio.to_thread(server.start)


async def _until_stopped(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for ``stop``, then for every role to wind down."""
    await stop.wait()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            log.debug("role ended with %r", result)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


__all__ = ["Roles", "serve"]
