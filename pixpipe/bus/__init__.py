"""The bus: NATS JetStream, embedded (a private ``nats-server``) or an existing server or
cluster. ``server.py`` runs or finds the server and connects; ``topology.py`` is the one table
of streams, consumers and KV buckets; ``consumer.py`` is the one pull loop, with the retry
policy in it. Events themselves (their payloads) are ``pixpipe.events``."""

from __future__ import annotations

from .consumer import consume, heartbeat, settle
from .health import bus_health
from .server import (
    URL_FILE,
    BusUnavailable,
    EmbeddedServer,
    client_options,
    connect,
    embedded_url,
    find_nats_server,
    redact,
    server_urls,
)
from .topology import (
    ACK_WAIT_S,
    BATCHES_BUCKET,
    CONSUMERS,
    DEAD_STREAM,
    KV_BUCKET,
    REPROCESS_BUCKET,
    STREAM,
    TOKENS_BUCKET,
    Consumer,
    DeadLetter,
    TopologyError,
    ack_wait,
    consumer_config,
    decode,
    ensure_topology,
    fetch_dead_letter,
    heartbeat_every,
    kv_keys,
    kv_name,
    kv_text,
    publish,
    publish_event,
    pull,
)

__all__ = [
    "ACK_WAIT_S",
    "BATCHES_BUCKET",
    "CONSUMERS",
    "DEAD_STREAM",
    "KV_BUCKET",
    "REPROCESS_BUCKET",
    "STREAM",
    "TOKENS_BUCKET",
    "URL_FILE",
    "BusUnavailable",
    "Consumer",
    "DeadLetter",
    "EmbeddedServer",
    "TopologyError",
    "ack_wait",
    "bus_health",
    "client_options",
    "connect",
    "consume",
    "consumer_config",
    "decode",
    "embedded_url",
    "ensure_topology",
    "fetch_dead_letter",
    "find_nats_server",
    "heartbeat",
    "heartbeat_every",
    "kv_keys",
    "kv_name",
    "kv_text",
    "publish",
    "publish_event",
    "pull",
    "redact",
    "server_urls",
    "settle",
]
