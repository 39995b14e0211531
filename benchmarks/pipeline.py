"""The pipeline end to end: the order through ``pixpipe up`` against ``pixpipe process``, and
the latency from an upload's response to its ``done``.

    python -m benchmarks.pipeline [--count N] [--runs R] [--latency N] [--no-write]

1. **Order.** ``pixpipe up`` (fresh data dir, two render processes, the two-thumbnail recipe)
   takes the first N corpus images through ``POST /v1/images`` from a concurrent client (8
   uploads in flight); the clock runs from the first upload until every image is ``done``
   (counted from ``/metrics``). In the same run, interleaved, ``pixpipe process -j 2`` does
   the same images with the same recipe (its own reported seconds). The ratio is the
   pipeline's overhead: bus, stores, HTTP and state on top of the pixels.
2. **Latency.** On an idle ``pixpipe up`` with the default recipe, one 12-megapixel photo
   uploaded at a time: the time from the upload's response to the ``done`` event on the
   image's Server-Sent Events stream, p50 and p99.

Writes the ``pipeline`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyvips
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchmarks import corpus, measure, recipes, report, tools

console = Console(stderr=True)
KEY = "bench-key"
IN_FLIGHT = 8
PHOTO_12MP = corpus.CORPUS / "photo-12mp.jpg"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(recipe: str | None) -> str:
    """A ``pixpipe.toml`` with the recipe's variants (None: the default six)."""
    lines = ['[api]\nkeys = ["' + KEY + '"]\n']
    for size in recipes.RECIPES[recipe] if recipe else ():
        lines.append(
            f'[[variants]]\nname = "{size.name}"\nwidth = {size.width}\nheight = {size.height}\n'
            f'fit = "{size.fit}"\nformat = "jpeg"\nquality = {recipes.QUALITY}\n'
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Up:
    """A running ``pixpipe up``: its base URL and its process id."""

    url: str
    pid: int


@contextlib.contextmanager
def pixpipe_up(recipe: str | None, env: dict[str, str] | None = None) -> Iterator[Up]:
    """A fresh ``pixpipe up`` (two render processes, ``env`` added to its environment),
    stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="pixpipe-bench-up-") as tmp:
        config = Path(tmp) / "pixpipe.toml"
        config.write_text(_config(recipe))
        port = _free_port()
        argv = [str(tools.PIXPIPE), "up", "--config", str(config), "--data-dir", f"{tmp}/data",
                "--port", str(port), "--workers", str(tools.JOBS)]  # fmt: skip
        log = open(Path(tmp) / "up.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env=tools._quiet_env(**(env or {})))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc)
            yield Up(url, proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pixpipe up exited {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("pixpipe up did not become ready in 60 s")


async def _processed(client: httpx.AsyncClient) -> int:
    text = (await client.get("/metrics")).text
    done = re.search(r"^pixpipe_images_processed_total (\S+)$", text, re.M)
    failed = re.findall(r"^pixpipe_images_failed_total\{[^}]*\} (\S+)$", text, re.M)
    return int(float(done.group(1)) if done else 0) + sum(int(float(v)) for v in failed)


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=IN_FLIGHT * 2)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as c:
        yield c


async def _order(url: str, files: list[Path]) -> float:
    """Upload every file (8 in flight) and wait until all are done → seconds."""
    async with _client(url) as client:
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def upload(index: int, path: Path) -> None:
            async with slots:
                data = await asyncio.to_thread(path.read_bytes)
                response = await client.post(f"/v1/images?key=order/{index:04d}.jpg", content=data)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(upload(i, f) for i, f in enumerate(files)))
        while await _processed(client) < len(files):
            await asyncio.sleep(0.1)
        return time.perf_counter() - started


Order = Callable[[str, list[Path]], Awaitable[float]]  # (url, files) → seconds


def order_run(files: list[Path], recipe: str, order: Order | None = None) -> tuple[float, float]:
    """One interleaved pair → (seconds of ``order(url, files)`` against a fresh ``pixpipe up``
    — by default every upload until all are done —, ``pixpipe process`` seconds)."""
    pair = cpu_run(files, recipe, order)
    return pair.pipeline_s, pair.process_s


@dataclass(frozen=True)
class Pair:
    """One interleaved pair: ``pixpipe up`` taking the order (from the first upload until
    all are done: wall seconds, and CPU seconds by process name) and ``pixpipe process``
    on the same files (its reported seconds, and the CPU seconds of the whole run)."""

    pipeline_s: float
    pipeline_cpu: dict[str, float]
    process_s: float
    process_cpu_s: float

    @property
    def cpu_ratio(self) -> float:
        return sum(self.pipeline_cpu.values()) / self.process_cpu_s


def cpu_run(files: list[Path], recipe: str, order: Order | None = None) -> Pair:
    with pixpipe_up(recipe) as up:
        before = measure.tree_cpu(up.pid)
        pipeline = asyncio.run((order or _order)(up.url, files))
        spent = measure.cpu_spent(before, measure.tree_cpu(up.pid))
    with tempfile.TemporaryDirectory(prefix="pixpipe-bench-") as out:
        call = tools.pixpipe_cli(files, recipe, Path(out))
        process = measure.run(call.argv, call.stdin, call.env)
    return Pair(pipeline, spent, float(process.report["seconds"]), process.cpu_s)


def ensure_photo_12mp() -> Path:
    """A baseline 4000x3000 JPEG cut from the big corpus image."""
    if not PHOTO_12MP.exists():
        big = pyvips.Image.thumbnail(str(corpus.BIG), 4000, height=3000, crop="centre")
        big.jpegsave(str(PHOTO_12MP), Q=90, strip=True)
    return PHOTO_12MP


async def _latencies(url: str, photo: bytes, count: int, progress: Progress) -> list[float]:
    task = progress.add_task("latency (12 MP, default six)", total=count)
    out = []
    async with _client(url) as client:
        for index in range(count):
            key = f"latency/{index:03d}.jpg"
            (await client.post(f"/v1/images?key={key}", content=photo)).raise_for_status()
            answered = time.perf_counter()
            async with client.stream("GET", f"/v1/images/{key}/events") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and '"done"' in line:
                        break
            out.append(time.perf_counter() - answered)
            progress.advance(task)
    return out


LOAD = ["?", "?"]  # the load average before and after the run


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console,
    )  # fmt: skip


ROLES = {"pixpipe": "pixpipe's own process (HTTP, bus, stores, state)",
         "python3": "render processes", "nats-server": "nats-server"}  # fmt: skip


def markdown(files: int, pairs: list[Pair], lat: list[float], command: str) -> str:
    pipe = statistics.median(p.pipeline_s for p in pairs)
    proc = statistics.median(p.process_s for p in pairs)
    ratios = [p.cpu_ratio for p in pairs]
    runs = ", ".join(f"{r:.2f}" for r in ratios)
    names = sorted({n for p in pairs for n in p.pipeline_cpu}, key=lambda n: n not in ROLES)
    ms = {n: statistics.median(p.pipeline_cpu.get(n, 0) for p in pairs) * 1000 / files
          for n in names}  # fmt: skip
    per_image = [f"| {ROLES.get(n, n)} | {ms[n]:.1f} |" for n in names]
    process_ms = statistics.median(p.process_cpu_s for p in pairs) * 1000 / files
    return "\n".join([
        "### Pipeline end to end",
        "",
        f"{time.strftime('%Y-%m-%d')}, {report.machine()}. Command: `{command}`; "
        f"load average {LOAD[0]} before, {LOAD[1]} after.",
        "",
        f"The order: {files} corpus images (~1.2 MB, 6 MP), two-thumbnail recipe, two render "
        f"processes; medians of {len(pairs)} interleaved runs.",
        "",
        "| path | seconds | images/s |",
        "| --- | ---: | ---: |",
        f"| `pixpipe up`, {IN_FLIGHT} concurrent `POST /v1/images` until all `done` "
        f"| {pipe:.1f} | {files / pipe:.1f} |",
        f"| `pixpipe process -j 2` | {proc:.1f} | {files / proc:.1f} |",
        "",
        "CPU per image (every process of `pixpipe up`, from the first upload until the last "
        "`done`; the client excluded):",
        "",
        "| process | CPU ms per image |",
        "| --- | ---: |",
        *per_image,
        f"| **all of `pixpipe up`** | **{sum(ms.values()):.1f}** |",
        f"| `pixpipe process -j 2` (the whole run, start-up included) | {process_ms:.1f} |",
        "",
        f"Pipeline CPU / process CPU: **{statistics.median(ratios):.2f}** (median; runs: "
        f"{runs}). Target ≤ 1.15.",
        "",
        f"Latency, upload response → `done` (SSE), one 12 MP baseline JPEG at a time, default "
        f"six, {len(lat)} uploads: p50 **{_quantile(lat, 0.5) * 1000:.0f} ms**, p99 "
        f"**{_quantile(lat, 0.99) * 1000:.0f} ms**, max {max(lat) * 1000:.0f} ms. "
        "Target p99 < 500 ms.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="images in the order")
    parser.add_argument("--runs", type=int, default=3, help="interleaved pairs (median)")
    parser.add_argument("--latency", type=int, default=50, help="uploads timed one by one")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    files = corpus.build(args.count)[: args.count]
    photo = ensure_photo_12mp().read_bytes()
    LOAD[0] = _load()
    pairs = []
    with _progress() as progress:
        task = progress.add_task("order: pixpipe up, then pixpipe process", total=args.runs)
        for _ in range(args.runs):
            pairs.append(cpu_run(files, "two-thumbnails"))
            progress.advance(task)
        with pixpipe_up(None) as up:
            lat = asyncio.run(_latencies(up.url, photo, args.latency, progress))
    LOAD[1] = _load()
    command = "python -m benchmarks.pipeline " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = markdown(len(files), pairs, lat, command.strip())
    print(text)
    if not args.no_write:
        report.update_results(text, name="pipeline")


if __name__ == "__main__":
    os.environ.setdefault("VIPS_WARNING", "0")
    main()
