"""Harness for pipeline tests: the real roles in-process (or as subprocesses), a webhook
receiver, and a TCP proxy that can refuse connections for a while."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from pixpipe.config import Settings
from pixpipe.pipeline.roles import Roles, serve
from pixpipe.pipeline.runtime import Runtime

API_KEY = "test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(data_dir: Path, nats_url: str, **overrides: Any) -> Settings:
    """Settings for a test: its own data dir and bus, short retries, a known API key."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "bus": {"url": nats_url},
        "retry": {"attempts": 3, "backoff_s": [3, 3]},
        "api": {"keys": [API_KEY]},
        "limits": {"max_seconds": 30},
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Pipeline:
    """A running pipeline: its runtime, an HTTP client on its API, and helpers."""

    rt: Runtime
    http: httpx.AsyncClient
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def upload(self, key: str, data: bytes) -> httpx.Response:
        return await self.http.post(
            "/v1/images", params={"key": key}, content=data,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )  # fmt: skip

    async def wait(self, key: str, states: tuple[str, ...] = ("done", "failed"), timeout=60.0):
        """The image's state document, once it reaches one of ``states``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                doc = await self.rt.states.get(key)
                if doc and doc.state in states:
                    return doc
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{key} did not reach {states} in {timeout}s: {doc}")

    def subjects(self, subject: str) -> list[dict[str, Any]]:
        return [payload for s, payload in self.events if s == subject]


@contextlib.asynccontextmanager
async def running(settings: Settings, roles: Roles | None = None) -> AsyncIterator[Pipeline]:
    """Run the roles (default: worker + API with one render process) until the block ends."""
    roles = roles or Roles(workers=1, port=free_port())
    stop = asyncio.Event()
    ready: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()

    async def on_ready(rt: Runtime, url: str) -> None:
        ready.set_result(rt)

    task = asyncio.create_task(serve(settings, roles, stop, on_ready))
    done, _ = await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what went wrong
    rt = ready.result()
    base = f"http://{roles.host}:{roles.port}"
    pipeline = Pipeline(rt, httpx.AsyncClient(base_url=base, timeout=30))
    await _wait_http(pipeline.http)

    async def record(msg: Any) -> None:
        pipeline.events.append((msg.subject, json.loads(msg.data)))

    sub = await rt.nc.subscribe("pixpipe.image.*", cb=record)
    try:
        yield pipeline
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        await pipeline.http.aclose()
        stop.set()
        await asyncio.wait_for(task, 60)


async def _wait_http(client: httpx.AsyncClient) -> None:
    for _ in range(300):  # a busy machine (the suite runs on two cores) can be slow to start
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("the API did not come up")


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


class WebhookReceiver:
    """A tiny HTTP server recording POSTs; ``failing`` makes it answer 503."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.failing:
                    self.send_response(503)
                else:
                    receiver.calls.append((dict(self.headers.items()), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FlakyProxy:
    """A TCP proxy to ``target`` that refuses connections while ``down``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        # Every open socket, both sides: an HTTP client keeps connections alive in a pool, and
        # an outage that only refused new ones would go unnoticed.
        self.open: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def down(self) -> None:
        """Stop listening: new connections are refused (existing ones are cut)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.open):
            writer.close()
        self.open.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.open.update((writer, up_writer))

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self.open.difference_update((writer, up_writer))
