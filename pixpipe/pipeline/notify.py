"""The notify consumer: processed / failed / batch events POSTed to every webhook.

Signed as the Standard Webhooks specification says (standardwebhooks.com; the library of the
same name signs, and any receiver verifies with the spec's libraries and refuses replays):
``webhook-id`` (``evt_{stream sequence}``: the same on every retry, for receivers to drop
duplicates), ``webhook-timestamp`` (unix seconds of this attempt) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``). Kept for existing receivers:
``X-Pixpipe-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>``,
``X-Pixpipe-Event`` (the subject) and ``X-Pixpipe-Delivery`` (the stream sequence). A failing
endpoint is retried with the bus's backoff; when it stays down the event is kept under
``_pixpipe/deadletters/notify/`` in quarantine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
from standardwebhooks.webhooks import Webhook

from .. import bus, tracing
from ..errors import Kind, PixpipeError
from .deadletters import dead_letter
from .runtime import Runtime

if TYPE_CHECKING:
    import asyncio

    from nats.aio.msg import Msg


def signature(secret: str, body: bytes) -> str:
    """The ``X-Pixpipe-Signature`` of earlier versions."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signer(secret: str) -> Webhook:
    """The Standard Webhooks signer for a webhook's secret: ``whsec_<base64>`` as the spec
    writes it, or any other string, whose bytes are then the key."""
    if secret.startswith("whsec_"):
        return Webhook(secret)
    return Webhook("whsec_" + base64.b64encode(secret.encode()).decode())


def standard_headers(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for one attempt."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer(secret).sign(webhook_id, now, body.decode()),
    }


async def deliver(client: httpx.AsyncClient, rt: Runtime, msg: Msg) -> None:
    """POST the event to every webhook; any failure makes the whole message retry."""
    seq = msg.metadata.sequence.stream if msg.metadata else 0
    for hook in rt.settings.webhooks:
        headers = {
            "Content-Type": "application/json",
            **standard_headers(hook.secret, f"evt_{seq}", msg.data),
            "X-Pixpipe-Event": msg.subject,
            "X-Pixpipe-Delivery": str(seq),
            "X-Pixpipe-Signature": signature(hook.secret, msg.data),
        }
        with tracing.span("webhook", kind=tracing.CLIENT, attributes=_http(hook.url)) as span:
            try:  # the receiver gets the trace context too (traceparent)
                response = await client.post(hook.url, content=msg.data,
                                             headers=tracing.inject(headers))  # fmt: skip
            except httpx.HTTPError as exc:
                raise PixpipeError(Kind.TRANSIENT, f"webhook {hook.url}: {exc!r}") from None
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 300:
                raise PixpipeError(Kind.TRANSIENT,
                                   f"webhook {hook.url}: HTTP {response.status_code}")  # fmt: skip


def _http(url: str) -> dict[str, str | int | None]:
    """A webhook span's attributes: the receiver's host and port, the method."""
    parts = httpx.URL(url)
    return {"server.address": parts.host, "server.port": parts.port, "http.request.method": "POST"}


async def run_notify(rt: Runtime, stop: asyncio.Event, concurrency: int = 4) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def handle(msg: Msg) -> None:
            await deliver(client, rt, msg)

        async def give_up(msg: Msg, error: PixpipeError, attempts: int) -> None:
            await dead_letter(rt, "notify", msg, error, attempts)

        await bus.consume(rt.js, "notify", handle, give_up, retry=rt.settings.retry,
                          concurrency=concurrency, stop=stop)  # fmt: skip


__all__ = ["deliver", "run_notify", "signature", "signer", "standard_headers"]
