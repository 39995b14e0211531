"""Real ``pixpipe`` processes for fault tests, seen from outside: start one (the ``spawn``
fixture), read what it prints, signal it, find its render processes, and read its bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from pixpipe import bus
from pixpipe.pipeline.states import KvStates


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    """``spawn("up", "--port", …, env={…})`` → a running ``Proc``, cleaned up after the test."""
    procs: list[Proc] = []

    def start(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
        proc = Proc([str(a) for a in args], cwd or tmp_path, env or {})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.cleanup()


class Proc:
    """A ``pixpipe`` command as a real subprocess, in a process group of its own, its output
    (stdout and stderr) kept in a file."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.log = cwd / f"{args[0]}-{uuid.uuid4().hex[:6]}.log"
        # Only what the test sets: no PIXPIPE_* or AWS_* from the developer's shell.
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PIXPIPE_", "AWS_"))}
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "pixpipe", *args], cwd=cwd,
                env={**base, "COLUMNS": "200", **env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of ``pattern`` in the output, once it is printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.output):
                return match
            if self.popen.poll() is not None:
                raise AssertionError(f"exited {self.popen.returncode}:\n{self.output}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"{pattern!r} not printed in {timeout}s:\n{self.output}")

    async def exit_code(self, timeout: float) -> int:
        try:
            return await asyncio.to_thread(self.popen.wait, timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None

    async def terminate(self, timeout: float = 15.0, group: bool = False) -> tuple[int, float]:
        """SIGTERM, as a service manager stops it: ``(exit code, seconds it took)``. With
        ``group``, to every process it started too (systemd's default, a terminal's Ctrl-C)."""
        started = time.monotonic()
        if group:
            os.killpg(self.pid, signal.SIGTERM)
        else:
            self.popen.send_signal(signal.SIGTERM)
        code = await self.exit_code(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the main process alone, as a crash or the OOM killer would."""
        self.popen.kill()
        self.popen.wait()

    def children(self) -> list[int]:
        """Its render processes."""
        return children_of(self.pid)

    def cleanup(self) -> None:
        """Stop it if a test failed half-way, and anything it left in its process group."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def children_of(pid: int, marker: bytes = b"spawn_main") -> list[int]:
    """The pids of ``pid``'s children whose command line holds ``marker`` (by default the
    render pool's processes: multiprocessing's spawn start)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and marker in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


def cpu_ticks(pid: int) -> int:
    """User + system CPU time a process has used, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def busy(pid: int, timeout: float = 30.0) -> None:
    """Wait until ``pid`` is burning CPU (a render under way)."""
    deadline = time.monotonic() + timeout
    before = cpu_ticks(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = cpu_ticks(pid)
        if now - before >= 2:  # an idle render process uses none: it is working
            return
        before = now
    raise AssertionError(f"process {pid} never got busy")


# --- the bus and the stores, seen from outside ----------------------------------------------


@contextlib.asynccontextmanager
async def bus_of(data_dir: Path) -> AsyncIterator[tuple[Any, KvStates]]:
    """``(js, states)`` on the embedded bus that ``pixpipe up`` runs under ``data_dir``."""
    nc = await bus.connect("embedded", data_dir=data_dir)
    try:
        js = nc.jetstream()
        yield js, KvStates(await js.key_value(bus.KV_BUCKET))
    finally:
        await nc.close()


async def processed_events(js: Any) -> list[tuple[str, str]]:
    """``(key, etag)`` of every ``image.processed`` the stream holds (duplicates too)."""
    info = await js.stream_info(bus.STREAM)
    keys = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            raw = await js.get_msg(bus.STREAM, seq)
            if raw.subject == "pixpipe.image.processed":
                event = json.loads(raw.data)
                keys.append((event["key"], event["etag"]))
    return keys
