"""The pipeline end to end: the order through ``pixpipe up`` against ``pixpipe process``, and
the latency from an upload's response to its ``done``.

    python -m benchmarks.pipeline [--count N] [--runs R] [--latency N]
                                  [--source http|folder|s3|all]... [--no-write]

1. **Order.** ``pixpipe up`` (fresh data dir, two render processes, the two-thumbnail recipe)
   takes the first N corpus images from a concurrent client (8 in flight), by each source
   (``sources.py``; default all three): ``http`` uploads them with ``POST /v1/images``,
   ``folder`` renames them into the originals folder, ``s3`` PUTs them into a bucket (moto)
   and posts their notifications to ``POST /v1/events/s3``. The clock runs from the first
   put until every image is ``done`` (heard on the bus, as an app would; a failure stops the run).
   After each, interleaved, ``pixpipe process -j 2`` does the same local files with the same
   recipe (its own reported seconds). The CPU ratio (every process of ``pixpipe up`` against
   the whole ``pixpipe process`` run) is the pipeline's overhead per source: bus, stores,
   HTTP or watcher, and state on top of the pixels.
2. **Latency.** On an idle ``pixpipe up`` with the default recipe, one 12-megapixel photo
   uploaded at a time: the time from the upload's response to the ``done`` event on the
   image's Server-Sent Events stream, p50 and p99.

Writes the ``pipeline`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyvips
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchmarks import corpus, measure, recipes, report, sources, tools

console = Console(stderr=True)
KEY = "bench-key"
IN_FLIGHT = 8
PHOTO_12MP = corpus.CORPUS / "photo-12mp.jpg"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(recipe: str | None, extra: str = "") -> str:
    """A ``pixpipe.toml`` with the recipe's variants (None: the default six) and ``extra``."""
    lines = ['[api]\nkeys = ["' + KEY + '"]\n', extra]
    for size in recipes.RECIPES[recipe] if recipe else ():
        lines.append(
            f'[[variants]]\nname = "{size.name}"\nwidth = {size.width}\nheight = {size.height}\n'
            f'fit = "{size.fit}"\nformat = "jpeg"\nquality = {recipes.QUALITY}\n'
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Up:
    """A running ``pixpipe up``: its base URL, its process id and its data dir."""

    url: str
    pid: int
    data_dir: Path


@contextlib.contextmanager
def pixpipe_up(
    recipe: str | None, env: dict[str, str] | None = None, config_extra: str = ""
) -> Iterator[Up]:
    """A fresh ``pixpipe up`` (two render processes, ``env`` added to its environment,
    ``config_extra`` to its ``pixpipe.toml``), stopped afterwards. On an error, the tail
    of its log is printed."""
    with measure.scratch("pixpipe-bench-up-") as tmp:
        config = Path(tmp) / "pixpipe.toml"
        config.write_text(_config(recipe, config_extra))
        port = _free_port()
        argv = [str(tools.PIXPIPE), "up", "--config", str(config), "--data-dir", f"{tmp}/data",
                "--port", str(port), "--workers", str(tools.JOBS)]  # fmt: skip
        log = open(Path(tmp) / "up.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env=tools._quiet_env(**(env or {})))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc)
            yield Up(url, proc.pid, Path(tmp) / "data")
        except BaseException:
            log.flush()
            console.print("[red]pixpipe up's log ends:[/red]\n" + _tail(Path(tmp) / "up.log"))
            raise
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


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


async def _outcomes(client: httpx.AsyncClient) -> tuple[int, int]:
    """Images done and images failed so far, from ``/metrics``."""
    text = (await client.get("/metrics")).text
    done = re.search(r"^pixpipe_images_processed_total (\S+)$", text, re.M)
    failed = re.findall(r"^pixpipe_images_failed_total\{[^}]*\} (\S+)$", text, re.M)
    return int(float(done.group(1)) if done else 0), sum(int(float(v)) for v in failed)


async def _processed(client: httpx.AsyncClient) -> int:
    return sum(await _outcomes(client))


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=IN_FLIGHT * 2)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as c:
        yield c


STALL_S = 120  # no image done for this long: the run is stuck


class _Outcomes:
    """The keys done and failed so far, heard on the bus (``image.processed`` and
    ``image.failed``), as an app listening for its images would: polling ``/metrics`` would
    cost ``pixpipe up`` ~1 ms of CPU a request and be counted as pipeline work."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.failed: set[str] = set()

    async def heard(self, msg: Any) -> None:
        key = json.loads(msg.data)["key"]
        (self.done if msg.subject.endswith(".processed") else self.failed).add(key)

    def now(self) -> tuple[int, int]:
        return len(self.done), len(self.failed - self.done)


@contextlib.asynccontextmanager
async def _listening(up: Up) -> AsyncIterator[_Outcomes]:
    import nats

    outcomes = _Outcomes()
    nc = await nats.connect((up.data_dir / "nats.url").read_text().strip())
    try:
        for subject in ("pixpipe.image.processed", "pixpipe.image.failed"):
            await nc.subscribe(subject, cb=outcomes.heard)
        await nc.flush()
        yield outcomes
    finally:
        await nc.close()


async def _order(up: Up, files: list[Path], put: sources.Put) -> float:
    """Put every file in (8 in flight) and wait until all are done → seconds."""
    async with _client(up.url) as client, _listening(up) as outcomes:
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(index: int, path: Path) -> None:
            async with slots:
                await put(client, up.data_dir, f"order/{index:04d}.jpg", path)

        started = time.perf_counter()
        await asyncio.gather(*(one(i, f) for i, f in enumerate(files)))
        seen, moved = (0, 0), time.monotonic()
        while (now := outcomes.now())[0] < len(files):
            if now[1]:
                raise RuntimeError(f"{now[1]} of {len(files)} images failed (see up.log)")
            if now != seen:
                seen, moved = now, time.monotonic()
            elif time.monotonic() - moved > STALL_S:
                raise RuntimeError(f"{now[0]} of {len(files)} done, none for {STALL_S} s")
            await asyncio.sleep(0.01)
        return time.perf_counter() - started


Order = Callable[[str, list[Path]], Awaitable[float]]  # (url, files) → seconds


def order_run(files: list[Path], recipe: str, order: Order | None = None) -> tuple[float, float]:
    """One interleaved pair → (seconds of ``order(url, files)`` against a fresh ``pixpipe up``
    — by default every upload until all are done —, ``pixpipe process`` seconds)."""
    pair = cpu_run(files, recipe, order)
    return pair.pipeline_s, pair.process_s


@dataclass(frozen=True)
class Pair:
    """One interleaved pair: ``pixpipe up`` taking the order by one source (from the first
    put until all are done: wall seconds, and CPU seconds by process name) and ``pixpipe
    process`` on the same files (its reported seconds, and the CPU seconds of the whole run)."""

    pipeline_s: float
    pipeline_cpu: dict[str, float]
    process_s: float
    process_cpu_s: float
    source: str = "http"

    @property
    def cpu_ratio(self) -> float:
        return sum(self.pipeline_cpu.values()) / self.process_cpu_s


def cpu_run(
    files: list[Path], recipe: str, order: Order | None = None, source: str = "http"
) -> Pair:
    """One interleaved pair: ``order`` (by default the files put in by ``source``, until
    all are done) against ``pixpipe up``, then ``pixpipe process``."""
    with sources.OPEN[source]() as way, pixpipe_up(recipe, way.env, way.config) as up:
        before = measure.tree_cpu(up.pid)
        pipeline = asyncio.run(order(up.url, files) if order else _order(up, files, way.put))
        spent = measure.cpu_spent(before, measure.tree_cpu(up.pid))
    with measure.scratch("pixpipe-bench-") as out:
        call = tools.pixpipe_cli(files, recipe, Path(out))
        process = measure.run(call.argv, call.stdin, call.env)
    return Pair(pipeline, spent, float(process.report["seconds"]), process.cpu_s, source)


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


def _cpu_ms(pairs: list[Pair], files: int) -> dict[str, float]:
    """Median CPU ms per image of each process name of ``pixpipe up``."""
    names = {n for p in pairs for n in p.pipeline_cpu}
    return {n: statistics.median(p.pipeline_cpu.get(n, 0) for p in pairs) * 1000 / files
            for n in names}  # fmt: skip


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(files: int, pairs: list[Pair], lat: list[float], command: str) -> str:
    by: dict[str, list[Pair]] = {}
    for pair in pairs:
        by.setdefault(pair.source, []).append(pair)
    ms = {source: _cpu_ms(group, files) for source, group in by.items()}
    names = sorted({n for m in ms.values() for n in m},
                   key=lambda n: (n not in ROLES, [*ROLES, n].index(n), n))  # fmt: skip
    runs = len(next(iter(by.values())))
    pipe = {source: statistics.median(p.pipeline_s for p in group) for source, group in by.items()}
    proc = statistics.median(p.process_s for p in pairs)
    process_ms = [statistics.median(p.process_cpu_s for p in g) * 1000 / files for g in by.values()]
    ratios = {source: [p.cpu_ratio for p in group] for source, group in by.items()}
    return "\n".join([
        "### Pipeline end to end",
        "",
        f"{time.strftime('%Y-%m-%d')}, {report.machine()}. Command: `{command}`; "
        f"load average {LOAD[0]} before, {LOAD[1]} after.",
        "",
        f"The order: {files} corpus images (~1.2 MB, 6 MP), two-thumbnail recipe, two render "
        f"processes; medians of {runs} interleaved runs per source"
        + (" (s3: originals in a bucket on moto's server, a thread of the benchmark, not "
           "counted; variants, backup, quarantine and cache in local folders)." if "s3" in by
           else "."),
        "",
        "| path | seconds | images/s |",
        "| --- | ---: | ---: |",
        *(_row(f"`pixpipe up`, {IN_FLIGHT} at a time by {sources.HOW[s]}, until all `done`",
               f"{t:.1f}", f"{files / t:.1f}") for s, t in pipe.items()),
        f"| `pixpipe process -j 2` | {proc:.1f} | {files / proc:.1f} |",
        "",
        "CPU ms per image, by source (every process of `pixpipe up`, from the first put until "
        "the last `done`; the client excluded):",
        "",
        _row("process", *by),
        _row("---", *("---:" for _ in by)),
        *(_row(ROLES.get(n, n), *(f"{m.get(n, 0):.1f}" for m in ms.values())) for n in names),
        _row("**all of `pixpipe up`**", *(f"**{sum(m.values()):.1f}**" for m in ms.values())),
        _row("`pixpipe process -j 2` (the whole run, start-up included)",
             *(f"{v:.1f}" for v in process_ms)),
        "",
        "| source | pipeline CPU / process CPU (median) | runs |",
        "| --- | ---: | --- |",
        *(_row(s, f"**{statistics.median(r):.2f}**", ", ".join(f"{v:.2f}" for v in r))
          for s, r in ratios.items()),
        "",
        "Target ≤ 1.15.",
        *(["", _latency_line(lat)] if lat else []),
    ])  # fmt: skip


def _latency_line(lat: list[float]) -> str:
    return (
        f"Latency, upload response → `done` (SSE), one 12 MP baseline JPEG at a time, default "
        f"six, {len(lat)} uploads: p50 **{_quantile(lat, 0.5) * 1000:.0f} ms**, p99 "
        f"**{_quantile(lat, 0.99) * 1000:.0f} ms**, max {max(lat) * 1000:.0f} ms. "
        "Target p99 < 500 ms."
    )


def _sources(chosen: list[str] | None) -> list[str]:
    """``--source`` values (repeatable, ``all``) → the sources, in their table order."""
    picked = set(chosen or ["all"])
    return [s for s in sources.OPEN if "all" in picked or s in picked]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="images in the order")
    parser.add_argument("--runs", type=int, default=3, help="interleaved pairs (median)")
    parser.add_argument("--latency", type=int, default=50, help="uploads timed one by one")
    parser.add_argument(
        "--source",
        action="append",
        choices=[*sources.OPEN, "all"],
        help="how the order's images reach pixpipe up (repeatable; default all)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    ways = _sources(args.source)
    files = corpus.build(args.count)[: args.count]
    LOAD[0] = _load()
    pairs = []
    with _progress() as progress:
        task = progress.add_task("order: pixpipe up, then pixpipe process",
                                 total=args.runs * len(ways))  # fmt: skip
        for _ in range(args.runs):
            for way in ways:
                pairs.append(cpu_run(files, "two-thumbnails", source=way))
                progress.advance(task)
        lat: list[float] = []
        if args.latency:  # 0: the order only
            photo = ensure_photo_12mp().read_bytes()
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
