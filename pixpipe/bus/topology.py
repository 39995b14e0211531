"""What lives on the bus, in one table: the streams, the durable consumers, the KV buckets,
and how a payload is published. JetStream already gives work queues, redelivery with backoff,
dedup and a key-value store; this module only configures them.

- stream ``PIXPIPE`` on ``pixpipe.>``, limits retention (kept ``MAX_AGE_S``), so each durable
  consumer sees every message it filters for (fan-out). A work-queue stream would refuse
  overlapping consumers. Several workers pulling from one durable share its work.
- stream ``PIXPIPE_DEAD`` keeps the server's "max deliveries" and "terminated" advisories,
  so dead letters are not lost while no worker listens (``pipeline/deadletters.py``).
- ``CONSUMERS``: every durable, its stream and subjects; ``patient`` ones retry on their own
  terms (unlimited deliveries: each may be a "not yet", answered with ``nak(delay)``).
- KV buckets ``pixpipe-images`` (image state), ``pixpipe-batches`` (orders),
  ``pixpipe-reprocess`` (backfill progress) and ``pixpipe-upload-tokens`` (spent tokens);
  ``kv_name`` is the one encoding of a text (an image key, a batch id) into the few
  characters KV keys allow.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nats.js import api
from nats.js.errors import NotFoundError

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from ..config import RetryModel
    from ..events import Event

STREAM = "PIXPIPE"
DEAD_STREAM = "PIXPIPE_DEAD"
KV_BUCKET = "pixpipe-images"
BATCHES_BUCKET = "pixpipe-batches"
REPROCESS_BUCKET = "pixpipe-reprocess"
TOKENS_BUCKET = "pixpipe-upload-tokens"  # local presigned upload tokens spent (single use)
SUBJECTS = "pixpipe.>"
DUPLICATE_WINDOW_S = 120.0
MAX_AGE_S = 7 * 24 * 3600.0
ACK_WAIT_S = 120.0
ADVISORY_MAX_DELIVERIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.*"
ADVISORY_TERMINATED = f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{STREAM}.*"


@dataclass(frozen=True, slots=True)
class Consumer:
    """A durable pull consumer: which stream, which subjects, and its delivery terms."""

    name: str
    subjects: tuple[str, ...]
    stream: str = STREAM
    patient: bool = False  # unlimited deliveries; the handler says when to look again
    new_only: bool = False  # start at the messages published after it was created


CONSUMERS: Mapping[str, Consumer] = {
    c.name: c
    for c in (
        Consumer("variants", ("pixpipe.object.created",)),
        Consumer("backup", ("pixpipe.object.created",)),
        Consumer(
            "notify", ("pixpipe.image.processed", "pixpipe.image.failed", "pixpipe.batch.done")
        ),
        Consumer("reprocess", ("pixpipe.reprocess",)),
        # Outcomes from before batches existed are no batch's business.
        Consumer(
            "batches",
            ("pixpipe.image.processed", "pixpipe.image.failed", "pixpipe.batch.check"),
            patient=True,
            new_only=True,
        ),
        Consumer("dead-letters", (">",), stream=DEAD_STREAM, patient=True),
    )
}


def consumer_config(consumer: Consumer, retry: RetryModel | None = None) -> api.ConsumerConfig:
    """The durable's JetStream config: explicit acks and the retry policy's backoff."""
    attempts = retry.attempts if retry else 3
    # The server requires max_deliver > len(backoff); extra backoff steps would never be used.
    backoff = list(retry.backoff_s if retry else [60.0, 120.0])[: max(attempts - 1, 0)]
    if consumer.patient:
        attempts, backoff = -1, []
    subjects = list(consumer.subjects)
    return api.ConsumerConfig(
        durable_name=consumer.name,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
        filter_subjects=subjects if len(subjects) > 1 else None,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.NEW if consumer.new_only else api.DeliverPolicy.ALL,
        ack_wait=backoff[0] if backoff else ACK_WAIT_S,
        max_deliver=attempts,
        backoff=backoff or None,
    )


def ack_wait(name: str, retry: RetryModel | None = None) -> float:
    """How long the server waits for an ack from ``name`` before it redelivers."""
    return float(consumer_config(CONSUMERS[name], retry).ack_wait or ACK_WAIT_S)


def kv_name(text: str) -> str:
    """A text (image key, batch id) as a KV key: base64url without padding."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def kv_text(name: str) -> str:
    """The text a ``kv_name`` encodes."""
    return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


async def ensure_topology(
    js: JetStreamContext, retry: RetryModel | None = None, *, replicas: int = 1,
    max_bytes: int = -1,
) -> KeyValue:  # fmt: skip
    """Create (or bring up to date) the streams, consumers and KV buckets.

    Idempotent: every process may call it at start. Returns the image-state KV bucket. The
    event stream keeps messages ``MAX_AGE_S`` and at most ``max_bytes``; when full it refuses
    new ones (``discard: new``) so a publisher hears of it, never dropping unread ones.
    """
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=STREAM, subjects=[SUBJECTS], retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, max_age=MAX_AGE_S, max_bytes=max_bytes,
            discard=api.DiscardPolicy.NEW, duplicate_window=min(DUPLICATE_WINDOW_S, MAX_AGE_S),
            num_replicas=replicas,
        ),
    )  # fmt: skip
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=DEAD_STREAM, subjects=[ADVISORY_MAX_DELIVERIES, ADVISORY_TERMINATED],
            retention=api.RetentionPolicy.LIMITS, storage=api.StorageType.FILE,
            max_age=MAX_AGE_S, num_replicas=replicas,
        ),
    )  # fmt: skip
    for consumer in CONSUMERS.values():
        await js.add_consumer(consumer.stream, consumer_config(consumer, retry))
    for bucket in (BATCHES_BUCKET, REPROCESS_BUCKET, TOKENS_BUCKET):
        await _ensure_kv(js, bucket, history=1, ttl=MAX_AGE_S, replicas=replicas)
    return await _ensure_kv(js, KV_BUCKET, history=5, replicas=replicas)


async def _ensure_kv(
    js: JetStreamContext, bucket: str, *, history: int, replicas: int, ttl: float | None = None
) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except NotFoundError:
        return await js.create_key_value(
            bucket=bucket, history=history, ttl=ttl, storage=api.StorageType.FILE,
            replicas=replicas,
        )  # fmt: skip


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: Mapping[str, Any],
    msg_id: str | None = None,
    *,
    timeout: float = 5.0,
) -> api.PubAck:
    """Publish JSON to the stream; the same ``msg_id`` within two minutes is stored once."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return await js.publish(subject, data, timeout=timeout, headers=headers)


async def publish_event(js: JetStreamContext, event: Event) -> api.PubAck:
    """Publish one of ``pixpipe.events``' events on its subject, with its dedup id."""
    return await publish(js, event.subject, event.to_dict(), event.msg_id)


async def pull(js: JetStreamContext, name: str) -> JetStreamContext.PullSubscription:
    """Bind to one of the durables of ``CONSUMERS``."""
    return await js.pull_subscribe_bind(name, stream=CONSUMERS[name].stream)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the server gave up on: ``reason`` is ``max_deliveries`` or ``terminated``."""

    consumer: str
    stream_seq: int
    deliveries: int
    reason: str
    time: datetime

    @classmethod
    def from_advisory(cls, data: bytes) -> DeadLetter:
        """Parse a ``MAX_DELIVERIES`` or ``MSG_TERMINATED`` advisory's JSON."""
        doc = json.loads(data)
        kind = doc.get("type", "")
        reason = "terminated" if "terminated" in kind else "max_deliveries"
        stamp = doc.get("timestamp")
        when = datetime.fromisoformat(stamp[:26].rstrip("Z")) if stamp else datetime.now(UTC)
        return cls(
            consumer=doc["consumer"],
            stream_seq=int(doc["stream_seq"]),
            deliveries=int(doc.get("deliveries", 0)),
            reason=reason,
            time=when.replace(tzinfo=UTC) if when.tzinfo is None else when,
        )


async def fetch_dead_letter(js: JetStreamContext, dead: DeadLetter) -> tuple[str, dict[str, Any]]:
    """The original ``(subject, payload)`` the advisory is about, read by stream sequence."""
    raw = await js.get_msg(STREAM, dead.stream_seq)
    return raw.subject or "", json.loads(raw.data or b"{}")


def decode(msg: Msg) -> dict[str, Any]:
    """A bus message's JSON payload."""
    doc: dict[str, Any] = json.loads(msg.data)
    return doc


__all__ = [
    "ACK_WAIT_S",
    "BATCHES_BUCKET",
    "CONSUMERS",
    "DEAD_STREAM",
    "KV_BUCKET",
    "REPROCESS_BUCKET",
    "STREAM",
    "TOKENS_BUCKET",
    "Consumer",
    "DeadLetter",
    "ack_wait",
    "consumer_config",
    "decode",
    "ensure_topology",
    "fetch_dead_letter",
    "kv_name",
    "kv_text",
    "publish",
    "publish_event",
    "pull",
]
