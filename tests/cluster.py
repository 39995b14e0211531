"""A real NATS JetStream cluster for tests: ``nats-server`` from the wheel, ``size`` nodes on
loopback ports, routes between them, each with its own JetStream store; nodes can be
SIGKILLed, stopped and started again (their store kept), as in a real outage."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pixpipe.bus import connect, find_nats_server


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Node:
    name: str
    port: int
    route_port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.process = subprocess.Popen(
            [find_nats_server(), "-c", str(self.config), "-l", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while b"Server is ready" not in self._log_since(offset):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} did not start: see {self.log}")
            time.sleep(0.02)

    def _log_since(self, offset: int) -> bytes:
        with contextlib.suppress(FileNotFoundError), self.log.open("rb") as log:
            log.seek(offset)
            return log.read()
        return b""

    def kill(self) -> None:
        """SIGKILL: a node lost, as a crash or a pulled cable would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (a rolling restart)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Cluster:
    """``size`` nodes named n1…nN (one: a lone server, no cluster block); ``url`` seeds a
    client with every node."""

    root: Path
    size: int = 3
    authorization: str = ""  # a nats-server config block every node gets
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = _free_ports(2 * self.size)
        clients, routes = ports[: self.size], ports[self.size :]
        for i in range(self.size):
            name = f"n{i + 1}"
            store = self.root / name
            store.mkdir(parents=True, exist_ok=True)
            others = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            config = store / "nats.conf"
            cluster = (f'cluster {{ name: pixpipe-test, listen: "127.0.0.1:{routes[i]}", '
                       f"routes: [{others}] }}\n") if self.size > 1 else ""  # fmt: skip
            config.write_text(
                f'server_name: {name}\nlisten: "127.0.0.1:{clients[i]}"\n'
                f'jetstream {{ store_dir: "{store / "js"}" }}\n{cluster}{self.authorization}\n'
            )
            self.nodes.append(Node(name, clients[i], routes[i], config, store / "nats.log"))

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> Cluster:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()  # none left running
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    async def wait_for_jetstream(self, timeout: float = 30.0, **options: object) -> None:
        """Until the cluster answers JetStream requests (its meta leader elected)."""
        deadline = time.monotonic() + timeout
        nc = await connect(self.url, max_reconnect_attempts=5, **options)
        try:
            while True:
                try:
                    await nc.jetstream().account_info()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()


def operator_mode(root: Path) -> tuple[str, Path]:
    """NATS' decentralised auth, as real clusters run it: an operator, a JetStream-enabled
    account and a user signed by it (``nats-jwt``, the NATS JWTs in Python). Returns the
    server config block and the user's ``.creds`` file (its JWT and nkey seed)."""
    from nats_jwt.nkeys_ext import create_operator_pair
    from nats_jwt.v2.operator_claims import OperatorClaims
    from nats_jwt.v2.snippets import Operator

    pair = create_operator_pair()
    operator = Operator(claims=OperatorClaims(pair.public_key.decode(), "pixpipe-test"),
                        seed=pair.seed)  # fmt: skip
    account, system = operator.create_account("PIXPIPE"), operator.create_account("SYS")
    limits = account.claims.nats.limits
    limits.disk_storage = limits.memory_storage = limits.streams = limits.consumer = -1
    user = account.create_user("pixpipe")
    creds = root / "pixpipe.creds"
    root.mkdir(parents=True, exist_ok=True)
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user.jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.key_pair.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    creds.chmod(0o600)
    accounts = {a.key_pair.public_key.decode(): a.jwt for a in (account, system)}
    preload = "\n".join(f"  {pub}: {jwt}" for pub, jwt in accounts.items())
    config = (f"operator: {operator.claims.encode(pair)}\n"
              f"system_account: {system.key_pair.public_key.decode()}\n"
              f"resolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n")  # fmt: skip
    return config, creds


__all__ = ["Cluster", "Node", "operator_mode"]
