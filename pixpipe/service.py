"""What every long-running role shares: the runtime (bus, KV, stores, settings) and the loop
that pulls from a durable consumer and turns a handler's outcome into ack / nak / term.

Retry policy, in one place: success → ``ack``; a transient ``PixpipeError`` → ``nak`` with the
configured backoff, until the last attempt; a permanent one, or the last attempt → the role's
``give_up`` (quarantine, dead-letter record), then ``term``. A bug (any other exception) is
retried like a transient failure and ends in the dead-letter advisory stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats.errors
from nats.js.errors import FetchTimeoutError

from . import bus
from .config import Settings
from .errors import Kind, PixpipeError
from .recipe import Recipe
from .results import JSON
from .state import States
from .stores import Stores, open_stores

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = logging.getLogger("pixpipe")
# The image a log line is about: set for each message a role handles, put on every record.
image_key: ContextVar[str] = ContextVar("image_key", default="-")


class ImageKeyFilter(logging.Filter):
    """Adds ``image_key`` to every record (``-`` outside a message's handling)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.image_key = image_key.get()
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, image key, message (and the error)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record), "level": record.levelname, "logger": record.name,
            "key": getattr(record, "image_key", "-"), "message": record.getMessage(),
        }  # fmt: skip
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging() -> None:
    """Logging for the long-running commands: the image key on every line, as text, or as
    JSON lines when ``PIXPIPE_LOG_FORMAT=json`` (for log shippers)."""
    handler = logging.StreamHandler()
    handler.addFilter(ImageKeyFilter())
    if os.environ.get("PIXPIPE_LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(image_key)s] %(message)s")
        )
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("pyvips", "watchfiles", "httpx", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _message_key(msg: Msg) -> str:
    """The ``key`` (or batch ``id``) of a JSON event, for the log lines of its handling."""
    try:
        doc = json.loads(msg.data)
    except ValueError:
        return "-"
    return str(doc.get("key") or doc.get("id") or "-") if isinstance(doc, dict) else "-"

Handler = Callable[["Msg"], Awaitable[None]]
GiveUp = Callable[["Msg", PixpipeError, int], Awaitable[None]]


@dataclass(slots=True)
class Runtime:
    """A connected process: settings, bus, image state and the five stores."""

    settings: Settings
    nc: NATS
    js: JetStreamContext
    states: States
    stores: Stores
    recipe: Recipe


@contextlib.asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Connect to the bus, create the topology (idempotent), open the stores."""
    nc = await bus.connect(settings.bus.url, data_dir=settings.data_dir)
    try:
        js = nc.jetstream()
        kv = await bus.ensure_topology(js, settings.retry)
        yield Runtime(settings, nc, js, States(kv), open_stores(settings), settings.recipe)
    finally:
        # close, not drain: the roles have stopped pulling, and anything unacknowledged is
        # redelivered anyway; a drain would wait out its timeout on idle pull subscriptions.
        with contextlib.suppress(Exception):
            await nc.close()


@contextlib.asynccontextmanager
async def heartbeat(msg: Msg, every: float) -> AsyncIterator[None]:
    """Tell the server we are still at it (``in_progress``) while a long job runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def settle(msg: Msg, rt: Runtime, handle: Handler, give_up: GiveUp) -> None:
    """Run ``handle`` on one message and ack, nak or give up, per the retry policy."""
    retry = rt.settings.retry
    delivered = msg.metadata.num_delivered or 1
    try:
        await handle(msg)
        await msg.ack()
        return
    except PixpipeError as exc:
        error = exc
    except Exception as exc:  # a bug: log it, retry it, let the advisory catch the last one
        log.exception("handler failed on %s", msg.subject)
        error = PixpipeError(Kind.TRANSIENT, f"internal error: {type(exc).__name__}: {exc}")
    if error.kind.permanent or delivered >= retry.attempts:
        try:
            await give_up(msg, error, delivered)
        except PixpipeError as exc:
            log.warning("could not dead-letter %s (%s); will retry", msg.subject, exc)
        else:
            await msg.term()
            return
    await msg.nak(delay=bus.retry_delay(retry, delivered))


async def consume(
    rt: Runtime,
    durable: str,
    handle: Handler,
    give_up: GiveUp,
    *,
    concurrency: int,
    stop: asyncio.Event,
) -> None:
    """Pull from ``durable`` with at most ``concurrency`` messages in hand, until ``stop``."""
    sub = await bus.pull(rt.js, durable)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def one(msg: Msg) -> None:
        image_key.set(_message_key(msg))  # this task's context only
        try:
            await settle(msg, rt, handle, give_up)
        except Exception:
            log.exception("could not settle a message on %s", msg.subject)
        finally:
            slots.release()

    while not stop.is_set():
        await slots.acquire()
        try:
            msgs = await sub.fetch(1, timeout=1.0)
        except (FetchTimeoutError, nats.errors.TimeoutError):
            slots.release()
            continue
        except Exception as exc:  # bus down or reconnecting: the client reconnects on its own
            slots.release()
            log.debug("fetch from %s failed: %s", durable, exc)
            await asyncio.sleep(0.5)
            continue
        for msg in msgs:
            task = asyncio.create_task(one(msg))
            running.add(task)
            task.add_done_callback(running.discard)
    if running:
        await asyncio.wait(running, timeout=30)


async def dead_letter(rt: Runtime, role: str, msg: Msg, error: PixpipeError, attempts: int) -> None:
    """Keep a message a role gave up on, with why, under ``_deadletters/{role}/`` in quarantine."""
    seq = msg.metadata.sequence.stream if msg.metadata else 0
    record = {
        "subject": msg.subject, "sequence": seq, "attempts": attempts, **error.to_dict(),
        "event": json.loads(msg.data or b"{}"),
    }  # fmt: skip
    await keep_dead_letter(rt, role, seq, record)
    log.warning("%s gave up on message %s: %s", role, seq, error)


async def keep_dead_letter(rt: Runtime, role: str, seq: int, record: dict[str, object]) -> None:
    key = f"_deadletters/{role}/{seq:012d}.json"
    await rt.stores.quarantine.put(key, json.dumps(record).encode(), content_type=JSON)
