"""A live pixpipe for HTTP tests: the real roles (``pixpipe.roles.serve``: API, worker, backup,
notify) on a loopback port, in a thread with its own event loop, against a nats-server of the
module's own. Sync clients (httpx, Playwright, schemathesis) talk to it over real HTTP.

Test modules make a module-scoped fixture with ``live_pixpipe``; this module has no tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pixpipe.bus import EmbeddedServer
from pixpipe.config import Settings
from pixpipe.pipeline.roles import Roles, serve

API_KEY = "test-key"
SECRET = "test-signing-secret"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_BYTES = 4_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    """A running pixpipe and a client on it."""

    url: str
    settings: Settings
    http: httpx.Client

    def upload(self, key: str, data: bytes, **kwargs: Any) -> httpx.Response:
        return self.http.post("/v1/images", params={"key": key}, content=data, headers=AUTH,
                              **kwargs)  # fmt: skip

    def state(self, key: str) -> dict[str, Any] | None:
        response = self.http.get(f"/v1/images/{quote(key)}")
        return response.json() if response.status_code == 200 else None

    def wait(
        self, key: str, states: tuple[str, ...] = ("done", "failed"), timeout: float = 60.0,
        etag_changed_from: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Poll the image's state until it is one of ``states``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(key)
            if state and state["state"] in states:
                return state
            time.sleep(0.1)
        raise AssertionError(f"{key} not in {states} after {timeout} s: {self.state(key)}")

    def processed(self, key: str, data: bytes) -> dict[str, Any]:
        """Upload and wait until done."""
        assert self.upload(key, data).status_code == 201
        state = self.wait(key)
        assert state["state"] == "done", state
        return state


def settings_for(data_dir: Path, nats_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "bus": {"url": nats_url},
        "retry": {"attempts": 2, "backoff_s": [0.5]},
        "api": {"keys": [API_KEY], "signing_secret": SECRET},
        "limits": {"max_input_bytes": MAX_BYTES, "max_seconds": 30, "transform_concurrency": 2},
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def running(settings: Settings, workers: int = 1) -> Iterator[Live]:
    """``serve`` in a thread until the block ends."""
    port = free_port()
    loop_box: dict[str, Any] = {}
    failed: list[BaseException] = []

    def run() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            loop_box["loop"], loop_box["stop"] = asyncio.get_running_loop(), stop
            await serve(settings, Roles(True, True, workers, "127.0.0.1", port), stop=stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test, not as a thread warning
            failed.append(exc)

    thread = threading.Thread(target=run, name="pixpipe-live", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as http:
        _wait_healthy(http, failed)
        try:
            yield Live(url, settings, http)
        finally:
            ended_early = not thread.is_alive()
            with contextlib.suppress(RuntimeError):  # the loop is closed if serve ended already
                loop_box["loop"].call_soon_threadsafe(loop_box["stop"].set)
            thread.join(timeout=60)
    if failed:
        raise failed[0]
    if ended_early:
        raise AssertionError("pixpipe stopped during the tests (a role ended: see the log)")


def _wait_healthy(http: httpx.Client, failed: list[BaseException]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if failed:
            raise failed[0]
        with contextlib.suppress(httpx.TransportError):
            if http.get("/readyz").status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("pixpipe did not become ready in 60 s")


@contextlib.contextmanager
def live_pixpipe(factory: pytest.TempPathFactory, **overrides: Any) -> Iterator[Live]:
    """pixpipe up (API + worker) on a nats-server of its own; for module-scoped fixtures."""
    with EmbeddedServer(factory.mktemp("nats")) as server:
        settings = settings_for(factory.mktemp("data"), server.url, **overrides)
        with running(settings) as pixpipe:
            yield pixpipe
