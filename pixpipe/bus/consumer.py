"""The one pull loop every role runs on (variants, backup, notify, reprocess, batches, dead
letters): fetch from a durable consumer with a bounded number of messages in hand, run the
role's handler, and settle each message by the retry policy (``jobs/retry.py``):

- the handler returns ``None`` → ``ack``; it returns a delay (a patient consumer's "not yet")
  → ``nak(delay)``, which is no failure;
- it raises → ``retry``: ``nak`` with the configured backoff; ``give_up``: the role's
  ``give_up`` records the failure, then ``term`` (if recording fails too, ``nak``: nothing is
  dropped unrecorded).

Long jobs run under ``heartbeat`` (``in_progress``) so the server does not redeliver them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import nats.errors
from nats.js.errors import FetchTimeoutError

from .. import tracing
from ..errors import PixpipeError
from ..jobs.retry import Action, as_failure, backoff, decide
from ..logs import image_key, log, message_key
from .topology import CONSUMERS, pull

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from ..config import RetryModel

Handler = Callable[["Msg"], Awaitable[float | None]]
GiveUp = Callable[["Msg", "PixpipeError", int], Awaitable[None]]
PATIENT_RETRY_S = 2.0  # a patient consumer's handler that failed looks again this soon
STOP_GRACE_S = 5.0  # how long a stopping consumer waits for the handlers in flight


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


async def settle(
    msg: Msg, handle: Handler, give_up: GiveUp, retry: RetryModel, *, patient: bool = False
) -> Action:
    """Run ``handle`` on one message and ack, nak or give up, per the retry policy."""
    delivered = msg.metadata.num_delivered or 1
    try:
        later = await handle(msg)
    except Exception as exc:
        if not isinstance(exc, PixpipeError):  # a bug: its traceback, then the usual retries
            log.exception("handler failed on %s", msg.subject)
        error = as_failure(exc)
        tracing.failed(exc)
    else:
        if later is None:
            await msg.ack()
        else:
            await msg.nak(delay=later)
        return Action.ACK
    action = decide(error, delivered, -1 if patient else retry.attempts)
    if action is Action.GIVE_UP:
        try:
            await give_up(msg, error, delivered)
        except Exception as exc:
            log.warning("could not record giving up on %s (%s); will retry", msg.subject, exc)
        else:
            await msg.term()
            return action
    await msg.nak(delay=PATIENT_RETRY_S if patient else backoff(retry, delivered))
    return Action.RETRY


async def consume(
    js: JetStreamContext,
    name: str,
    handle: Handler,
    give_up: GiveUp,
    *,
    retry: RetryModel,
    concurrency: int,
    stop: asyncio.Event,
) -> None:
    """Pull from the durable ``name`` with at most ``concurrency`` messages in hand, until
    ``stop``; each message is handled in its own task, its key on every log line."""
    sub = await pull(js, name)
    patient = CONSUMERS[name].patient
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def one(msg: Msg) -> None:
        image_key.set(message_key(msg))  # this task's context only
        try:
            with tracing.consumed(name, msg):  # the publisher's span is its parent
                await settle(msg, handle, give_up, retry, patient=patient)
        except Exception:
            log.exception("could not settle a message on %s", msg.subject)
        finally:
            slots.release()

    while not stop.is_set():
        await slots.acquire()
        try:
            msgs = await sub.fetch(1, timeout=1.0)
        except (FetchTimeoutError, nats.errors.TimeoutError, TimeoutError):  # nothing came
            slots.release()
            continue
        except Exception as exc:  # bus down or reconnecting: the client reconnects on its own
            slots.release()
            log.debug("fetch from %s failed: %s", name, exc)
            await asyncio.sleep(0.5)
            continue
        for msg in msgs:
            task = asyncio.create_task(one(msg))
            running.add(task)
            task.add_done_callback(running.discard)
    if running:
        # Handlers in flight get a moment to finish; past it (a render still going, the bus
        # gone and its requests waiting out their timeouts) they are cancelled: their messages
        # stay unacknowledged and come back after a restart, so nothing is lost by not waiting.
        _, stuck = await asyncio.wait(running, timeout=STOP_GRACE_S)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck, timeout=1.0)


__all__ = ["PATIENT_RETRY_S", "STOP_GRACE_S", "GiveUp", "Handler", "consume", "heartbeat", "settle"]
