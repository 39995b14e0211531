"""Past one machine: a real 3-node NATS JetStream cluster (nats-server from the wheel, on
loopback ports), S3 through moto's server, and real ``pixpipe api`` / ``pixpipe worker``
processes. Nodes and workers are lost as in production: SIGKILL, and a rolling restart."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixpipe import bus
from pixpipe.bus import EmbeddedServer, TopologyError, bus_health, ensure_topology
from pixpipe.pipeline.states import KvStates
from tests import images
from tests.cluster import Cluster, operator_mode
from tests.conftest_services import AWS_ENV, MotoS3
from tests.pipeline import API_KEY, eventually, free_port
from tests.processes import Proc, processed_events

pytestmark = [pytest.mark.timeout(300)]  # each test has a cluster of its own
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SIX = ("xl", "l", "m", "s", "sq-m", "sq-s")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path / "cluster").start()
    try:
        yield nodes
    finally:
        nodes.stop()


@contextlib.asynccontextmanager
async def client(url: str, **options: Any) -> AsyncIterator[Any]:
    nc = await bus.connect(url, max_reconnect_attempts=-1, **options)
    try:
        yield nc
    finally:
        await nc.close()


async def test_replicas_3_gives_the_stream_every_bucket_and_consumer_three_copies(
    cluster: Cluster,
) -> None:
    await cluster.wait_for_jetstream()
    async with client(cluster.url) as nc:
        js = nc.jetstream()
        await ensure_topology(js, replicas=3)
        streams = {info.config.name: info for info in await js.streams_info()}
        kv = {"KV_pixpipe-images", "KV_pixpipe-batches", "KV_pixpipe-reprocess",
              "KV_pixpipe-upload-tokens"}  # fmt: skip
        assert {bus.STREAM, bus.DEAD_STREAM} | kv <= set(streams)
        assert {name: i.config.num_replicas for name, i in streams.items()} == dict.fromkeys(
            streams, 3
        )
        for consumer in bus.CONSUMERS.values():
            info = await js.consumer_info(consumer.stream, consumer.name)
            assert info.config.num_replicas == 3, consumer.name
        health = await eventually_healthy(nc, js)
        assert health["node"] in {"n1", "n2", "n3"} and health["cluster"] == "pixpipe-test"
        assert "@" not in (health["url"] or "")
        # Asked again with one copy, the topology follows (JetStream scales streams down).
        await ensure_topology(js, replicas=1)
        assert (await js.stream_info(bus.STREAM)).config.num_replicas == 1


async def eventually_healthy(nc: Any, js: Any, replicas: int = 3) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def healthy() -> bool:
        found.update(await bus_health(nc, js, replicas))
        return bool(found["ok"])

    await eventually(healthy, timeout=30)
    return found


async def test_more_replicas_than_nodes_is_a_clear_error_at_start(
    nats_server_private: EmbeddedServer, spawn: Any
) -> None:
    async with client(nats_server_private.url) as nc:
        with pytest.raises(TopologyError) as refused:
            await ensure_topology(nc.jetstream(), replicas=3)
    assert "[bus] replicas = 3" in str(refused.value)
    status = spawn("status", env={"PIXPIPE_BUS__URL": nats_server_private.url,
                                  "PIXPIPE_BUS__REPLICAS": "3"})  # fmt: skip
    assert await status.exit_code(60) == 2  # a configuration the bus cannot hold
    assert "[bus] replicas = 3" in status.output and "Traceback" not in status.output


# ---- many processes on the cluster, nodes and workers lost -----------------------------------


def _env(cluster: Cluster, moto: MotoS3, prefix: str, data_dir: Path) -> dict[str, str]:
    stores = {s: f"s3://{moto.bucket}/{prefix}/{s}"
              for s in ("originals", "variants", "backup", "quarantine", "cache")}  # fmt: skip
    return {
        **AWS_ENV, "AWS_ENDPOINT_URL": moto.endpoint,
        "PIXPIPE_BUS__URL": cluster.url, "PIXPIPE_BUS__REPLICAS": "3",
        "PIXPIPE_API__KEYS": API_KEY, "PIXPIPE_DATA_DIR": str(data_dir),
        "PIXPIPE_RETRY__ATTEMPTS": "5", "PIXPIPE_RETRY__BACKOFF_S": "[2, 2, 2, 2]",
        **{f"PIXPIPE_STORES__{s.upper()}": url for s, url in stores.items()},
    }  # fmt: skip


async def _upload(http: httpx.AsyncClient, url: str, key: str, data: bytes) -> None:
    """Upload as a client should: again after a 503 (no quorum for a moment) or a refused
    connection, until it is taken."""
    for _ in range(120):
        with contextlib.suppress(httpx.TransportError):
            response = await http.post(f"{url}/v1/images", params={"key": key}, content=data,
                                       headers=AUTH)  # fmt: skip
            if response.status_code == 201:
                return
            assert response.status_code == 503, response.text
        await asyncio.sleep(0.5)
    raise AssertionError(f"{key} was never taken")


async def _started(proc: Proc, pattern: str) -> None:
    await proc.wait_for(pattern, timeout=90)


def _variants_in_s3(moto: MotoS3, prefix: str) -> collections.Counter[str]:
    """How many variants each original has in the bucket."""
    counts: collections.Counter[str] = collections.Counter()
    paginator = moto.client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=moto.bucket, Prefix=f"{prefix}/variants/"):
        for item in page.get("Contents", []):
            rest = item["Key"].removeprefix(f"{prefix}/variants/")
            variant, key = rest.split("/", 1)
            if variant in SIX:
                counts[key] += 1
    return counts


@pytest.fixture
def processes(
    tmp_path: Path, cluster: Cluster, aws_env: MotoS3, spawn: Any
) -> tuple[Any, dict[str, str], str]:
    """``start(*args)``: a pixpipe process on the cluster and the bucket (cleaned up after)."""
    prefix = f"cluster-{uuid.uuid4().hex[:8]}"
    env = _env(cluster, aws_env, prefix, tmp_path / "data")
    return lambda *args: spawn(*args, env=env), env, prefix


async def _apis_and_workers(cluster: Cluster, start: Any) -> tuple[list[str], list[Proc]]:
    """Two ``pixpipe api`` and two ``pixpipe worker`` processes on the cluster, started."""
    await cluster.wait_for_jetstream()
    ports = [free_port(), free_port()]
    apis = [start("api", "--port", port) for port in ports]
    workers = [start("worker", "--workers", "1") for _ in range(2)]
    for proc in apis:
        await _started(proc, r"pixpipe is up")
    for proc in workers:
        await _started(proc, r"worker ready")
    return [f"http://127.0.0.1:{port}" for port in ports], workers


async def _all_done(cluster: Cluster, keys: list[str], timeout: float = 150) -> KvStates:
    async with client(cluster.url) as nc:
        states = KvStates(await nc.jetstream().key_value(bus.KV_BUCKET))
        remaining = set(keys)

        async def settled() -> bool:
            for key in sorted(remaining):
                with contextlib.suppress(Exception):  # a leader being elected
                    doc = await states.get(key)
                    if doc is not None and doc.state in ("done", "failed"):
                        assert doc.state == "done", doc
                        remaining.discard(key)
            return not remaining

        await eventually(settled, timeout=timeout)
        # The state is written before its event goes out (and a worker killed in between has
        # its delivery announce it again): wait for every event, then count them.
        processed: collections.Counter[str] = collections.Counter()

        async def announced() -> bool:
            found = await processed_events(nc.jetstream())
            processed.clear()
            processed.update(key for key, _ in found)
            return all(processed[k] for k in keys)

        await eventually(announced, timeout=60)
        assert {k: processed[k] for k in keys} == dict.fromkeys(keys, 1)  # exactly once each
        return states


async def test_losing_the_stream_leader_and_a_worker_loses_no_image(
    cluster: Cluster, processes: tuple[Any, dict[str, str], str], aws_env: MotoS3
) -> None:
    start, _, prefix = processes
    urls, workers = await _apis_and_workers(cluster, start)
    keys = [f"shoot/{n:02d}.jpg" for n in range(24)]
    photos = {key: images.jpeg(images.photo(1600, 1000, seed=n)) for n, key in enumerate(keys)}
    async with httpx.AsyncClient(timeout=60) as http, client(cluster.url) as nc:
        for n, key in enumerate(keys[:12]):
            await _upload(http, urls[n % 2], key, photos[key])
        leader = (await nc.jetstream().stream_info(bus.STREAM)).cluster.leader
        cluster.node(leader).kill()  # and it stays down
        workers[0].kill()
        start("worker", "--workers", "1")  # its replacement
        for n, key in enumerate(keys[12:]):
            await _upload(http, urls[n % 2], key, photos[key])
    await _all_done(cluster, keys)
    assert _variants_in_s3(aws_env, prefix) == dict.fromkeys(keys, len(SIX))
    assert not cluster.node(leader).running


async def test_a_rolling_restart_of_every_node_during_uploads_loses_nothing(
    cluster: Cluster, processes: tuple[Any, dict[str, str], str], aws_env: MotoS3
) -> None:
    start, _, prefix = processes
    urls, _ = await _apis_and_workers(cluster, start)
    keys = [f"rolling/{n:02d}.jpg" for n in range(30)]
    rng = random.Random(7)

    async def uploads() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            for n, key in enumerate(keys):
                await _upload(http, urls[n % 2], key, images.jpeg(images.photo(800, 600, seed=n)))
                await asyncio.sleep(rng.uniform(0.05, 0.3))

    uploading = asyncio.create_task(uploads())
    async with client(cluster.url) as nc:
        js = nc.jetstream()
        for node in cluster.nodes:  # one at a time, each back and caught up before the next
            await asyncio.to_thread(node.stop)
            await asyncio.sleep(1)
            await asyncio.to_thread(node.start)
            await eventually_healthy(nc, js)
    await uploading
    await _all_done(cluster, keys)
    assert _variants_in_s3(aws_env, prefix) == dict.fromkeys(keys, len(SIX))


# ---- a cluster that wants credentials ---------------------------------------------------------


async def _status_ok(spawn: Any, env: dict[str, str], tries: int = 10) -> dict[str, Any]:
    """``pixpipe status`` until it reports every copy current (exit 0): right after the
    topology is made, a replica may still be catching up (exit 1, ``ok: false``)."""
    for _ in range(tries):
        status = spawn("status", env=env)
        code = await status.exit_code(90)
        assert code in (0, 1), status.output  # connected either way: credentials taken
        health = json.loads(status.output[status.output.index("{"):])
        if code == 0:
            assert health["ok"]
            return dict(health)
        await asyncio.sleep(1)
    raise AssertionError(f"never ok: {health}")


async def test_a_cluster_with_credentials_takes_them_and_refuses_without(
    tmp_path: Path, spawn: Any
) -> None:
    users = 'authorization { users: [ { user: "pixpipe", password: "s3cret-pw" } ] }'
    secured = Cluster(tmp_path / "cluster", authorization=users).start()
    try:
        await secured.wait_for_jetstream(user="pixpipe", password="s3cret-pw")
        env = {"PIXPIPE_BUS__URL": secured.url, "PIXPIPE_BUS__REPLICAS": "3",
               "PIXPIPE_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
        health = await _status_ok(spawn, {**env, "PIXPIPE_BUS__USER": "pixpipe",
                                          "PIXPIPE_BUS__PASSWORD": "s3cret-pw"})  # fmt: skip
        assert health["stream"]["replicas"] == 3 and health["cluster"] == "pixpipe-test"
        without = spawn("status", env=env)
        assert await without.exit_code(60) == 2
        assert "Authorization Violation" in without.output and "check [bus]" in without.output
        assert "Traceback" not in without.output
        wrong = spawn("status", env={**env, "PIXPIPE_BUS__USER": "pixpipe",
                                     "PIXPIPE_BUS__PASSWORD": "guess"})  # fmt: skip
        assert await wrong.exit_code(60) == 2
        assert "guess" not in wrong.output and "s3cret" not in wrong.output
    finally:
        secured.stop()


async def test_a_cluster_in_operator_mode_takes_a_creds_file(tmp_path: Path, spawn: Any) -> None:
    config, creds = operator_mode(tmp_path / "auth")
    secured = Cluster(tmp_path / "cluster", authorization=config).start()
    try:
        await secured.wait_for_jetstream(user_credentials=str(creds))
        env = {"PIXPIPE_BUS__URL": secured.url, "PIXPIPE_BUS__REPLICAS": "3",
               "PIXPIPE_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
        health = await _status_ok(spawn, {**env, "PIXPIPE_BUS__CREDS": str(creds)})
        assert health["states"]["replicas"] == 3
        without = spawn("status", env=env)
        assert await without.exit_code(60) == 2
        assert "Authorization Violation" in without.output and "check [bus]" in without.output
    finally:
        secured.stop()


def _nkey_user() -> tuple[str, str]:
    """A user nkey: (public key for the server, seed for the client)."""
    import nkeys
    from nats_jwt.nkeys_ext import create_user_pair

    pair = create_user_pair()
    assert isinstance(pair, nkeys.KeyPair)
    return pair.public_key.decode(), pair.seed.decode()


@pytest.mark.parametrize("method", ["token", "nkey", "tls"])
async def test_a_server_wanting_a_token_an_nkey_or_tls_takes_them(
    tmp_path: Path, spawn: Any, method: str
) -> None:
    """The other ways real servers admit clients: ``[bus] token``, ``nkey_seed``, and TLS with
    the server's CA (``tls_ca``), each refused without."""
    env = {"PIXPIPE_DATA_DIR": str(tmp_path / "data")}
    if method == "token":
        config, given = 'authorization { token: "t0ken-of-the-day" }', {
            "PIXPIPE_BUS__TOKEN": "t0ken-of-the-day"}  # fmt: skip
    elif method == "nkey":
        public, seed = _nkey_user()
        config = f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}'
        given = {"PIXPIPE_BUS__NKEY_SEED": seed}
    else:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        config = (f'tls {{ cert_file: "{tmp_path / "server.pem"}", '
                  f'key_file: "{tmp_path / "server.key"}" }}')  # fmt: skip
        given = {"PIXPIPE_BUS__TLS_CA": str(tmp_path / "ca.pem")}
    server = Cluster(tmp_path / "server", size=1, authorization=config).start()
    try:
        if method == "tls":
            env["PIXPIPE_BUS__URL"] = server.url.replace("nats://", "tls://")
        else:
            env["PIXPIPE_BUS__URL"] = server.url
        health = await _status_ok(spawn, {**env, **given})
        assert health["connected"] and health["stream"]["replicas"] == 1
        refused = spawn("status", env=env)
        assert await refused.exit_code(60) == 2, refused.output
        assert "cannot connect to the bus" in refused.output
        for secret in given.values():
            assert secret not in refused.output or method == "tls"
    finally:
        server.stop()
