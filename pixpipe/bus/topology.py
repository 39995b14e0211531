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
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from tenacity import (
    AsyncRetrying,
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from .. import tracing

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
PUBLISH_RETRY_S = 15.0  # how long a publish with an id is retried for (a leader election)
# No answer (yet): nats-py raises its own timeout or the builtin one, or "no responders" /
# 503 while a stream has no leader; but a full stream (10077) is an answer, not to be retried.
_STREAM_FULL = 10077


def _unanswered(exc: BaseException) -> bool:
    if isinstance(exc, ServiceUnavailableError):
        return exc.err_code != _STREAM_FULL
    return isinstance(exc, TimeoutError | NatsTimeout | NoRespondersError)


# Topology requests are idempotent: one unanswered while a cluster forms or elects a leader
# is asked again, for up to TOPOLOGY_RETRY_S.
TOPOLOGY_RETRY_S = 60.0
_answered = retry(
    retry=retry_if_exception(_unanswered), wait=wait_exponential(multiplier=0.2, max=3.0),
    stop=stop_after_delay(TOPOLOGY_RETRY_S), reraise=True,
)  # fmt: skip
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


def consumer_config(
    consumer: Consumer, retry: RetryModel | None = None, replicas: int = 1
) -> api.ConsumerConfig:
    """The durable's JetStream config: explicit acks, the retry policy's backoff, and as many
    copies as its stream."""
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
        num_replicas=replicas,
    )


def ack_wait(name: str, retry: RetryModel | None = None) -> float:
    """How long the server waits for an ack from ``name`` before it redelivers."""
    return float(consumer_config(CONSUMERS[name], retry).ack_wait or ACK_WAIT_S)


def kv_name(text: str) -> str:
    """A text (image key, batch id) as a KV key: base64url without padding."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def heartbeat_every(name: str, retry: RetryModel | None = None) -> float:
    """How often a handler at work on one of ``name``'s messages tells the server it still is:
    three times per ack wait, so a long render is never redelivered while it runs (a floor
    above that, with a short ack wait, had the same image rendered twice at once)."""
    return ack_wait(name, retry) / 3


async def kv_keys(kv: KeyValue, pattern: str = ">") -> list[str]:
    """The keys in a bucket matching a subject pattern, from one stream-info request (deleted
    ones too: their markers hold the subject; a ``get`` says they are gone).

    Not nats-py's ``kv.keys()`` / watch: its end-of-listing marker can be queued before the
    entries already delivered (a race the tests lost under load, listing nothing)."""
    prefix = kv._pre  # "$KV.{bucket}." (nats-py keeps it, and the stream, on the bucket)
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{prefix}{pattern}")
    return sorted(subject.removeprefix(prefix) for subject in (info.state.subjects or {}))


async def kv_changes(kv: KeyValue) -> JetStreamContext.PushSubscription:
    """Every write to a bucket from now on: an ordered consumer on its stream that starts at
    the next message, so once this returns no later write is missed (a KV watch would first
    replay each key's last value, and its end-of-replay marker can come late)."""
    return await kv._js.subscribe(f"{kv._pre}>", stream=kv._stream, ordered_consumer=True,
                                  deliver_policy=api.DeliverPolicy.NEW)  # fmt: skip


def kv_text(name: str) -> str:
    """The text a ``kv_name`` encodes."""
    return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()


class TopologyError(RuntimeError):
    """The bus cannot hold the topology as configured (``[bus] replicas`` over the cluster's
    size, say): a message for people, raised at start."""


# JetStream's error codes for "cannot place that many copies".
_NO_CLUSTER, _TOO_FEW_PEERS = 10074, 10005


def _placement(exc: APIError, name: str, replicas: int) -> Exception:
    if exc.err_code in (_NO_CLUSTER, _TOO_FEW_PEERS) or "replicas" in (exc.description or ""):
        return TopologyError(
            f"[bus] replicas = {replicas}, but the bus cannot keep {replicas} copies of {name}: "
            f"{exc.description} (a single server keeps 1; a cluster at most one per node)"
        )
    return exc


@_answered
async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    """Create the stream, or bring its settings up to date where JetStream allows (replicas,
    limits); what it refuses to change is reported with the stream's name."""
    name, replicas = config.name or "", config.num_replicas or 1
    try:
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
    except APIError as exc:
        raise _placement(exc, f"stream {name}", replicas) from None


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
        config = consumer_config(consumer, retry, replicas)
        await _answered(js.add_consumer)(consumer.stream, config)
    for bucket in (BATCHES_BUCKET, REPROCESS_BUCKET, TOKENS_BUCKET):
        await _ensure_kv(js, bucket, history=1, ttl=MAX_AGE_S, replicas=replicas)
    return await _ensure_kv(js, KV_BUCKET, history=5, replicas=replicas)


@_answered
async def _ensure_kv(
    js: JetStreamContext, bucket: str, *, history: int, replicas: int, ttl: float | None = None
) -> KeyValue:
    """The bucket, created if need be; an existing one gets ``replicas`` copies (its stream
    ``KV_{bucket}`` is scaled like any other)."""
    try:
        try:
            kv = await js.key_value(bucket)
        except NotFoundError:
            return await js.create_key_value(
                bucket=bucket, history=history, ttl=ttl, storage=api.StorageType.FILE,
                replicas=replicas,
            )  # fmt: skip
        info = await js.stream_info(f"KV_{bucket}")
        if info.config.num_replicas != replicas:
            await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))
        return kv
    except APIError as exc:
        raise _placement(exc, f"KV bucket {bucket}", replicas) from None


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: Mapping[str, Any],
    msg_id: str | None = None,
    *,
    timeout: float = 5.0,
) -> api.PubAck:
    """Publish JSON to the stream; the same ``msg_id`` within two minutes is stored once.
    The headers carry the id and the publishing span's trace context (``tracing.py``)."""
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    with tracing.publishing(subject, msg_id, payload) as headers:
        if not msg_id:
            return await js.publish(subject, data, timeout=timeout, headers=headers)
        # With an id a repeat is harmless, so a publish that got no answer (a stream leader
        # being elected, a node lost) is sent again, the same id each time, for up to
        # PUBLISH_RETRY_S.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_unanswered),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_delay(PUBLISH_RETRY_S), reraise=True,
        ):  # fmt: skip
            with attempt:
                ack = await js.publish(subject, data, timeout=timeout, headers=headers)
                tracing.note(duplicate=bool(ack.duplicate))  # the bus had it: dropped
                return ack
    raise AssertionError("unreachable: tenacity re-raises the last failure")


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
    "PUBLISH_RETRY_S",
    "REPROCESS_BUCKET",
    "STREAM",
    "TOKENS_BUCKET",
    "Consumer",
    "DeadLetter",
    "TopologyError",
    "ack_wait",
    "consumer_config",
    "decode",
    "ensure_topology",
    "fetch_dead_letter",
    "heartbeat_every",
    "kv_changes",
    "kv_keys",
    "kv_name",
    "kv_text",
    "publish",
    "publish_event",
    "pull",
]
