"""The bus: NATS JetStream, embedded (a private ``nats-server``) or an existing server or
cluster. ``server.py`` runs or finds the server and connects; ``topology.py`` is the one table
of streams, consumers and KV buckets; ``consumer.py`` is the one pull loop, with the retry
policy in it. Events themselves (their payloads) are ``pixpipe.events``."""

from __future__ import annotations

from .consumer import consume, heartbeat, settle
from .server import URL_FILE, EmbeddedServer, connect, embedded_url, find_nats_server, server_urls
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
    ack_wait,
    consumer_config,
    decode,
    ensure_topology,
    fetch_dead_letter,
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
    "Consumer",
    "DeadLetter",
    "EmbeddedServer",
    "ack_wait",
    "connect",
    "consume",
    "consumer_config",
    "decode",
    "embedded_url",
    "ensure_topology",
    "fetch_dead_letter",
    "find_nats_server",
    "heartbeat",
    "kv_name",
    "kv_text",
    "publish",
    "publish_event",
    "pull",
    "server_urls",
    "settle",
]
