"""The bus against a real nats-server: topology, dedup, fan-out, KV, dead letters, restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeout

from pixpipe.bus import (
    CONSUMERS,
    DEAD_STREAM,
    KV_BUCKET,
    STREAM,
    URL_FILE,
    DeadLetter,
    EmbeddedServer,
    connect,
    consumer_config,
    decode,
    ensure_topology,
    fetch_dead_letter,
    kv_keys,
    kv_name,
    publish,
    publish_event,
    pull,
    server_urls,
)
from pixpipe.bus.server import PASSWORD_FILE
from pixpipe.config import RetryModel
from pixpipe.events import ObjectCreated
from pixpipe.jobs.retry import backoff

FAST_RETRY = RetryModel(attempts=2, backoff_s=[0.2])


async def drain(js: Any, durable: str, *, ack: bool = True, wait: float = 0.5) -> list[Any]:
    """Every message the durable consumer hands out right now."""
    sub = await pull(js, durable)
    got: list[Any] = []
    while True:
        try:
            msgs = await sub.fetch(10, timeout=wait)
        except (NatsTimeout, TimeoutError):  # nats-py raises either when nothing comes
            break
        for msg in msgs:
            got.append(msg)
            if ack:
                await msg.ack()
    await sub.unsubscribe()
    return got


def test_embedded_server_starts_and_stops(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path) as server:
        assert server.process is not None and server.process.poll() is None
        assert server_urls("embedded", tmp_path) == [server.url]
        process = server.process
    assert process.poll() is not None
    assert (tmp_path / "jetstream").is_dir()
    with pytest.raises(ConnectionError, match="no embedded bus is running"):
        server_urls("embedded", tmp_path)


async def _connect_raw(port: int, credentials: dict[str, str]) -> bytes:
    """What the server answers a client's CONNECT (NATS' text protocol, no client library)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()  # INFO {...}
        connect = json.dumps({"verbose": False, "pedantic": False, **credentials})
        writer.write(f"CONNECT {connect}\r\nPING\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_the_embedded_server_refuses_a_client_without_its_password(
    nats_server_private: EmbeddedServer,
) -> None:
    """Anyone on the machine can reach a loopback port: without the data dir's password
    (mode 600) nobody gets in, so nobody can delete the stream or read the state."""
    server = nats_server_private
    nc = await connect(server.url, max_reconnect_attempts=1)
    try:
        await ensure_topology(nc.jetstream())
    finally:
        await nc.close()
    for credentials in ({}, {"user": "pixpipe", "pass": "guess"}):
        answer = await _connect_raw(server.port, credentials)
        assert answer.startswith(b"-ERR 'Authorization Violation'"), answer
    nc = await connect(server.url, max_reconnect_attempts=1)
    try:
        assert (await nc.jetstream().stream_info(STREAM)).config.name == STREAM
    finally:
        await nc.close()
    for name in (PASSWORD_FILE, URL_FILE, "nats-server.conf"):
        assert (server.data_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert server.process is not None
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert server.password.encode() not in cmdline  # not for `ps` to show


def test_server_urls_split_a_cluster_list() -> None:
    assert server_urls("nats://h1:4222, h2:4222") == ["nats://h1:4222", "nats://h2:4222"]


def test_a_taken_port_is_an_error_not_a_hang(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    with pytest.raises(RuntimeError, match="nats-server exited"):
        EmbeddedServer(tmp_path, port=nats_server.port).start(timeout=5)


async def test_topology_is_idempotent(js: tuple[Any, Any]) -> None:
    _, jsc = js
    await ensure_topology(jsc)
    kv = await ensure_topology(jsc, RetryModel(attempts=5, backoff_s=[1, 2, 3]))
    assert kv is not None
    info = await jsc.stream_info(STREAM)
    assert info.config.subjects == ["pixpipe.>"]
    assert info.config.duplicate_window == 120
    names = sorted(c.name for c in await jsc.consumers_info(STREAM))
    assert names == sorted(c.name for c in CONSUMERS.values() if c.stream == STREAM)
    assert [c.name for c in await jsc.consumers_info(DEAD_STREAM)] == ["dead-letters"]
    variants = await jsc.consumer_info(STREAM, "variants")
    assert variants.config.max_deliver == 5  # updated in place on the second call
    assert variants.config.backoff == [1, 2, 3]
    assert (await jsc.stream_info(DEAD_STREAM)).config.name == DEAD_STREAM


def test_consumer_config_trims_backoff_to_attempts() -> None:
    retry = RetryModel(attempts=2, backoff_s=[60, 120, 240])
    config = consumer_config(CONSUMERS["variants"], retry)
    assert config.max_deliver == 2 and config.backoff == [60]
    single = consumer_config(CONSUMERS["variants"], RetryModel(attempts=1, backoff_s=[60]))
    assert single.backoff is None


def test_retry_delay_follows_the_backoff_list() -> None:
    retry = RetryModel(attempts=4, backoff_s=[60, 120])
    assert [backoff(retry, n) for n in (1, 2, 3)] == [60, 120, 120]


async def test_duplicate_msg_id_is_stored_once(js: tuple[Any, Any]) -> None:
    _, jsc = js
    await ensure_topology(jsc)
    event = ObjectCreated(key="users/42/IMG 0001.jpg", size=10, etag='"abc"')
    acks = [await publish_event(jsc, event) for _ in range(3)]
    assert [a.duplicate for a in acks] == [None, True, True]
    await publish(jsc, "pixpipe.object.created", {"key": "other"}, msg_id="other@1")
    assert (await jsc.stream_info(STREAM)).state.messages == 2
    got = await drain(jsc, "variants")
    assert [decode(m)["key"] for m in got] == ["users/42/IMG 0001.jpg", "other"]
    assert got[0].headers["Nats-Msg-Id"] == "users/42/IMG 0001.jpg@abc"


async def test_each_consumer_sees_each_message_it_filters(js: tuple[Any, Any]) -> None:
    _, jsc = js
    await ensure_topology(jsc)
    for i in range(3):
        await publish(jsc, "pixpipe.object.created", {"key": f"k{i}"}, msg_id=f"k{i}")
    await publish(jsc, "pixpipe.image.processed", {"key": "k0"})
    await publish(jsc, "pixpipe.image.failed", {"key": "k1"})
    await publish(jsc, "pixpipe.batch.done", {"id": "b"})
    variants, backup, notify = await asyncio.gather(
        drain(jsc, "variants"), drain(jsc, "backup"), drain(jsc, "notify")
    )
    assert [decode(m)["key"] for m in variants] == ["k0", "k1", "k2"]
    assert [decode(m)["key"] for m in backup] == ["k0", "k1", "k2"]
    assert [m.subject for m in notify] == [
        "pixpipe.image.processed",
        "pixpipe.image.failed",
        "pixpipe.batch.done",
    ]


async def test_workers_on_one_durable_share_the_work(js: tuple[Any, Any]) -> None:
    _, jsc = js
    await ensure_topology(jsc)
    for i in range(20):
        await publish(jsc, "pixpipe.object.created", {"key": f"k{i}"}, msg_id=f"k{i}")
    first, second = await pull(jsc, "variants"), await pull(jsc, "variants")
    a, b = await first.fetch(10, timeout=2), await second.fetch(10, timeout=2)
    keys = [decode(m)["key"] for m in a + b]
    assert sorted(keys) == sorted(f"k{i}" for i in range(20))  # each once, none twice
    for msg in a + b:
        await msg.ack()


async def test_kv_put_get(js: tuple[Any, Any]) -> None:
    _, jsc = js
    kv = await ensure_topology(jsc)
    state = {"state": "done", "variants": {"m": "m/a b.jpg"}}
    # KV keys allow only [-/_=.a-zA-Z0-9]: callers encode image keys (e.g. base64url).
    await kv.put("dXNlcnMvNDIvSU1HIDAwMDEuanBn", json.dumps(state).encode())
    entry = await kv.get("dXNlcnMvNDIvSU1HIDAwMDEuanBn")
    assert json.loads(entry.value) == state
    assert (await jsc.key_value(KV_BUCKET)).__class__ is kv.__class__


async def test_a_record_that_is_no_state_does_not_stop_a_listing(js: tuple[Any, Any]) -> None:
    """A hand-written or foreign record in the bucket is left out of listings, with a warning;
    every state around it is still listed (it failed the whole listing: seen in CI)."""
    from pixpipe.jobs.state import ImageState
    from pixpipe.pipeline.states import KvStates

    _, jsc = js
    states = KvStates(await ensure_topology(jsc))
    await states.put(ImageState(key="a.jpg", state="done"))
    await states.kv.put(kv_name("odd.jpg"), b'{"state": "done", "variants": {"m": "m/a b.jpg"}}')
    await states.kv.put(kv_name("junk.jpg"), b"not json")
    await states.put(ImageState(key="b.jpg", state="failed"))
    assert sorted([s.key async for s in states.all()]) == ["a.jpg", "b.jpg"]
    assert [s.key for s in await states.failed()] == ["b.jpg"]


async def test_listing_a_bucket_sees_every_state_just_written(js: tuple[Any, Any]) -> None:
    """Listings read the bucket's subjects in one request: nats-py's ``kv.keys()`` could
    queue its end marker before the entries it had received, and list nothing."""
    from pixpipe.jobs.state import ImageState
    from pixpipe.pipeline.states import KvStates

    _, jsc = js
    states = KvStates(await ensure_topology(jsc))
    keys = [f"list/{n:03d}.jpg" for n in range(120)]
    for round_ in range(5):
        for key in keys:
            await states.put(ImageState(key=key, state="failed" if round_ % 2 else "done"))
        await states.kv.delete(kv_name(keys[0]))
        listed = [s.key async for s in states.all()]
        assert sorted(listed) == keys[1:], f"round {round_}: {len(listed)} listed"
        assert len(await kv_keys(states.kv, "*")) == len(keys)  # the deleted one's marker too


async def test_a_remembered_revision_never_loses_a_write(js: tuple[Any, Any]) -> None:
    """``KvStates.change`` sends its compare-and-set on the revision it last read or wrote,
    without reading again. Another writer in between (another process: another KvStates)
    makes it read again and apply the change to that writer's state; a change that declines
    the remembered state is asked again on a fresh read; a deleted record is created anew;
    and twenty writers racing on one key through two processes' states lose no increment."""
    from pixpipe.jobs.state import ImageState
    from pixpipe.pipeline.states import KvStates

    _, jsc = js
    kv = await ensure_topology(jsc)
    ours, theirs = KvStates(kv), KvStates(kv)
    key = "remembered/a.jpg"
    await ours.put(ImageState(key=key, state="pending", etag="1", attempts=1))
    await theirs.change(key, lambda s: s.but(etag="2"))  # ours still remembers etag 1
    seen: list[str | None] = []

    def bump(state: ImageState | None) -> ImageState:
        seen.append(state.etag if state else None)
        return state.but(attempts=state.attempts + 1)

    assert (await ours.change(key, bump)).etag == "2"
    assert seen == ["1", "2"], "the stale revision was not read again"
    assert (await theirs.get(key)).attempts == 2
    await theirs.change(key, lambda s: s.but(state="done"))
    # Ours remembers `pending`: declining it must not be the answer, the fresh state is done.
    assert await ours.change(key, lambda s: s.but(state="failed") if s.state == "done" else None)
    assert (await theirs.get(key)).state == "failed"
    await kv.delete(kv_name(key))
    assert await ours.change(key, lambda s: ImageState(key=key, state="pending")) is not None
    assert (await theirs.get(key)).state == "pending"

    await ours.put(ImageState(key=key, state="processing", attempts=0))

    async def increment(states: KvStates) -> None:
        await states.change(key, lambda s: s.but(attempts=s.attempts + 1))

    await asyncio.gather(*(increment(ours if n % 2 else theirs) for n in range(20)))
    assert (await KvStates(kv).get(key)).attempts == 20


async def test_a_first_state_is_written_only_where_none_ever_was(js: tuple[Any, Any]) -> None:
    """``KvStates.create`` (an upload's ``pending`` without a read first) writes only the very
    first state of a key: of two racing, one wins; a key with a state, or whose state was
    deleted, is left to the caller's read; and its revision is remembered for the next
    compare-and-set."""
    from pixpipe.jobs.state import ImageState
    from pixpipe.pipeline.states import KvStates

    _, jsc = js
    kv = await ensure_topology(jsc)
    ours, theirs = KvStates(kv), KvStates(kv)
    key = "first/a.jpg"
    won = await asyncio.gather(*(states.create(ImageState(key=key, state="pending", etag=e))
                                 for states, e in ((ours, "1"), (theirs, "2"))))  # fmt: skip
    assert sorted(won) == [False, True]
    winner = "1" if won[0] else "2"
    assert (await KvStates(kv).get(key)).etag == winner
    assert not await ours.create(ImageState(key=key, state="pending", etag="3"))
    assert (await KvStates(kv).get(key)).etag == winner
    await kv.delete(kv_name(key))
    assert not await ours.create(ImageState(key=key, state="pending", etag="4"))
    assert await KvStates(kv).get(key) is None
    fresh = KvStates(kv)
    assert await fresh.create(ImageState(key="first/b.jpg", state="pending", etag="5"))
    assert fresh._seen[kv_name("first/b.jpg")][1].etag == "5"
    assert (await fresh.change("first/b.jpg", lambda s: s.but(state="processing"))).etag == "5"


async def test_max_deliveries_leaves_a_dead_letter_with_the_original(js: tuple[Any, Any]) -> None:
    _, jsc = js
    await ensure_topology(jsc, FAST_RETRY)
    dead_sub = await pull(jsc, "dead-letters")
    ack = await publish(jsc, "pixpipe.object.created", {"key": "poison.jpg"}, msg_id="poison")
    sub = await pull(jsc, "variants")
    # Nak every delivery (a transient failure, redelivered at once) until the server stops.
    # The count is the server's: a delivery can also go to a pull request that expired just
    # before (nats-py's fetch, under load), so the test follows num_delivered, not its fetches.
    delivered = []
    while True:
        try:
            msgs = await sub.fetch(1, timeout=1.0)
        except (NatsTimeout, TimeoutError):
            break  # the server gave up after `attempts`
        for msg in msgs:
            if msg.metadata.sequence.stream != ack.seq:
                await msg.ack()  # not ours
                continue
            delivered.append(msg.metadata.num_delivered)
            await msg.nak()
    assert delivered and delivered[-1] == 2 and delivered == sorted(delivered), delivered

    [advisory] = await dead_sub.fetch(1, timeout=5)
    dead = DeadLetter.from_advisory(advisory.data)
    assert (dead.consumer, dead.deliveries, dead.reason) == ("variants", 2, "max_deliveries")
    assert dead.stream_seq == ack.seq
    subject, payload = await fetch_dead_letter(jsc, dead)
    assert (subject, payload) == ("pixpipe.object.created", {"key": "poison.jpg"})
    await advisory.ack()


async def test_terminated_message_leaves_a_dead_letter(js: tuple[Any, Any]) -> None:
    _, jsc = js
    await ensure_topology(jsc, FAST_RETRY)
    dead_sub = await pull(jsc, "dead-letters")
    await publish(jsc, "pixpipe.object.created", {"key": "bad.jpg"}, msg_id="bad")
    [msg] = await (await pull(jsc, "backup")).fetch(1, timeout=5)
    await msg.term()
    [advisory] = await dead_sub.fetch(1, timeout=5)
    dead = DeadLetter.from_advisory(advisory.data)
    assert (dead.consumer, dead.reason) == ("backup", "terminated")
    assert (await fetch_dead_letter(jsc, dead))[1] == {"key": "bad.jpg"}


async def test_messages_survive_a_server_crash(nats_server_private: EmbeddedServer) -> None:
    server = nats_server_private
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await connect(server.url, reconnected_cb=on_reconnect)
    try:
        jsc = nc.jetstream()
        await ensure_topology(jsc)
        await publish(jsc, "pixpipe.object.created", {"key": "kept.jpg"}, msg_id="kept")
        server.kill()
        server.restart()
        await asyncio.wait_for(reconnected.wait(), 10)  # the client reconnects by itself
        sub = await pull(jsc, "variants")
        [msg] = await sub.fetch(1, timeout=10)
        assert decode(msg) == {"key": "kept.jpg"}
        await msg.ack()
    finally:
        await nc.close()


def test_a_picked_port_taken_meanwhile_is_picked_again(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pixpipe.bus.server

    ports = iter([nats_server.port])  # the first pick loses the race to another server
    free = pixpipe.bus.server._free_port
    monkeypatch.setattr(pixpipe.bus.server, "_free_port", lambda: next(ports, None) or free())
    with EmbeddedServer(tmp_path) as server:
        assert server.port != nats_server.port
