"""The notify consumer: processed / failed / batch events POSTed to every webhook.

Each request carries ``X-Pixpipe-Signature: sha256=<hex HMAC-SHA256 of the body>`` (with the
webhook's secret), ``X-Pixpipe-Event`` (the subject) and ``X-Pixpipe-Delivery`` (the stream
sequence, for receivers to drop duplicates). A failing endpoint is retried with the bus's
backoff; when it stays down the event is kept under ``_deadletters/notify/`` in quarantine.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import httpx

from .. import bus
from ..errors import Kind, PixpipeError
from .deadletters import dead_letter
from .runtime import Runtime

if TYPE_CHECKING:
    import asyncio

    from nats.aio.msg import Msg


def signature(secret: str | None, body: bytes) -> str:
    digest = hmac.new((secret or "").encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


async def deliver(client: httpx.AsyncClient, rt: Runtime, msg: Msg) -> None:
    """POST the event to every webhook; any failure makes the whole message retry."""
    seq = msg.metadata.sequence.stream if msg.metadata else 0
    for hook in rt.settings.webhooks:
        headers = {
            "Content-Type": "application/json",
            "X-Pixpipe-Event": msg.subject,
            "X-Pixpipe-Delivery": str(seq),
            "X-Pixpipe-Signature": signature(hook.secret, msg.data),
        }
        try:
            response = await client.post(hook.url, content=msg.data, headers=headers)
        except httpx.HTTPError as exc:
            raise PixpipeError(Kind.TRANSIENT, f"webhook {hook.url}: {exc!r}") from None
        if response.status_code >= 300:
            raise PixpipeError(Kind.TRANSIENT, f"webhook {hook.url}: HTTP {response.status_code}")


async def run_notify(rt: Runtime, stop: asyncio.Event, concurrency: int = 4) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def handle(msg: Msg) -> None:
            await deliver(client, rt, msg)

        async def give_up(msg: Msg, error: PixpipeError, attempts: int) -> None:
            await dead_letter(rt, "notify", msg, error, attempts)

        await bus.consume(rt.js, "notify", handle, give_up, retry=rt.settings.retry,
                          concurrency=concurrency, stop=stop)  # fmt: skip


__all__ = ["deliver", "run_notify", "signature"]
