"""What a process can tell of the bus it talks to: which node, and whether the event stream
and the image-state bucket have the copies ``[bus] replicas`` asks for (``/readyz``,
``pixpipe status``). Never a password: the node's address is shown without one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .server import redact
from .topology import KV_BUCKET, STREAM

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext


async def _copies(js: JetStreamContext, stream: str, replicas: int) -> dict[str, Any]:
    info = await js.stream_info(stream)
    cluster = info.cluster
    peers = [r for r in (cluster.replicas or []) if r.current and not r.offline] if cluster else []
    current = (1 if cluster is None or cluster.leader else 0) + len(peers)
    return {
        "leader": cluster.leader if cluster else None,
        "replicas": info.config.num_replicas or 1,
        "current": current,
        "ok": current >= replicas,
    }


async def bus_health(nc: NATS, js: JetStreamContext, replicas: int) -> dict[str, Any]:
    """``{connected, node, url, stream: {...}, states: {...}}``; ``ok`` is False on any gap."""
    info: dict[str, Any] = nc._server_info or {}  # what the node said of itself on connecting
    url = nc.connected_url.geturl() if nc.connected_url else None
    health: dict[str, Any] = {
        "connected": nc.is_connected,
        "node": info.get("server_name"),
        "cluster": info.get("cluster"),
        "url": redact(url) if url else None,
    }
    try:
        health["stream"] = await _copies(js, STREAM, replicas)
        health["states"] = await _copies(js, f"KV_{KV_BUCKET}", replicas)
    except Exception as exc:  # no quorum, no leader, not connected: not ready
        health["error"] = f"{type(exc).__name__}: {exc}"[:300]
    health["ok"] = bool(
        health["connected"] and "error" not in health
        and health["stream"]["ok"] and health["states"]["ok"]
    )  # fmt: skip
    return health


__all__ = ["bus_health"]
