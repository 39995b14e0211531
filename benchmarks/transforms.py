"""On-the-fly transforms, pixpipe against thumbor, on the same machine, image and operation.

    .venv/bin/python -m benchmarks.transforms [--runs 3] [--seconds 15] [--no-write]

The operation: an 800x600 smart cover crop to JPEG quality 80 —
pixpipe ``/t/{sig}/w:800/h:600/fit:cover/g:attention/f:jpeg/q:80/{key}`` (libvips attention
crop), thumbor ``/unsafe/800x600/smart/filters:quality(80):format(jpeg)/{name}`` (feature
detector, PIL engine), both progressive, on three sources from the corpus: a ~6 MP baseline
JPEG, a 12 MP progressive JPEG and a 12 MP PNG.

Servers, with the same cores: thumbor from PyPI in a venv of its own
(``benchmarks/.thumbor-venv``, made on first use: its pins clash with ours), one process per
core; ``pixpipe api`` (one uvicorn process, renders in its pool of one process per core) on a
nats-server of its own. Load: ``--concurrency`` requests in flight for ``--seconds`` (half that
for cached requests), from an async httpx client for uncached requests and from Debian's
``wrk`` for cached ones (``apt-get install wrk``; without it, the httpx client); requests/s and
latency percentiles.

- **uncached**: thumbor without result storage (the same URL every time); pixpipe with every
  request a cache miss — each names another key, all hard links to the one source file (in a
  dot folder, which the API's drop-folder watcher leaves alone), checked by ``X-Cache: miss``.
- **cached**: pixpipe's cache store (``X-Cache: hit``); thumbor's file result storage.
- for context: pixpipe's cached latency with one request in flight, and thumbor's plain centre
  crop (no detector).

Runs are interleaved (each run does every source and server) and medians reported; the section
between the ``transforms:`` markers of ``RESULTS.md`` is rewritten (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyvips

from benchmarks import corpus
from benchmarks.report import update_results
from pixpipe.bus import EmbeddedServer
from pixpipe.http.signing import transform_path

HERE = Path(__file__).resolve().parent
THUMBOR_VENV = HERE / ".thumbor-venv"
THUMBOR_PIN = ("thumbor==7.8.0", "opencv-python-headless")  # opencv: the smart-crop detector
OPTIONS = "w:800/h:600/fit:cover/g:attention/f:jpeg/q:80"
THUMBOR_OPTIONS = "800x600/smart/filters:quality(80):format(jpeg)"
THUMBOR_PLAIN = "800x600/filters:quality(80):format(jpeg)"
SECRET = "benchmark-signing-secret"
LINKS = 8000  # distinct keys per source and run for pixpipe's uncached requests
SOURCES = {
    "baseline JPEG, 6 MP": lambda: corpus.order_path(0),
    "progressive JPEG, 12 MP": lambda: corpus.PROGRESSIVE,
    "PNG, 12 MP": lambda: corpus.PNG,
}
MODES = ("thumbor uncached", "pixpipe uncached", "thumbor cached", "pixpipe cached")
QUIET = "pixpipe cached, 1 in flight"  # latency without queueing behind the rest of the load
PLAIN = "thumbor uncached, no smart"  # context: thumbor's centre crop, without its detector


@dataclass
class Sample:
    rps: float
    p50: float  # ms
    p99: float  # ms
    requests: int
    p95: float = float("nan")  # ms; wrk does not print it


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thumbor_bin() -> Path:
    """thumbor's executable, installed into its own venv on first use."""
    exe = THUMBOR_VENV / "bin" / "thumbor"
    if not exe.exists():
        print(f"installing thumbor into {THUMBOR_VENV} …", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
        pip = [str(THUMBOR_VENV / "bin" / "pip"), "install", "--quiet"]
        subprocess.run([*pip, *THUMBOR_PIN], check=True)
    return exe


def thumbor_conf(path: Path, images: Path, results: Path | None) -> Path:
    lines = [
        "LOADER = 'thumbor.loaders.file_loader'",
        f"FILE_LOADER_ROOT_PATH = {str(images)!r}",
        "STORAGE = 'thumbor.storages.no_storage'",
        "DETECTORS = ['thumbor.detectors.feature_detector']",
        "PROGRESSIVE_JPEG = True",
        "QUALITY = 80",
        "ALLOW_UNSAFE_URL = True",
    ]
    if results is None:
        lines.append("RESULT_STORAGE = 'thumbor.result_storages.no_storage'")
    else:
        lines += [
            "RESULT_STORAGE = 'thumbor.result_storages.file_storage'",
            f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {str(results)!r}",
            "RESULT_STORAGE_STORES_UNSAFE = True",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def process(args: list[str], url: str, ready: str, **env: str) -> Iterator[str]:
    """Run a server until the block ends; wait until ``url + ready`` answers."""
    # A session of its own: thumbor forks one process per core, and all of them must stop.
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{args[0]} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + ready, timeout=5).status_code < 500:
                    break
            time.sleep(0.3)
        else:
            raise SystemExit(f"{args[0]} did not start")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        with contextlib.suppress(ProcessLookupError):  # forked workers still busy: now
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def thumbor(images: Path, work: Path, cached: bool) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    name = "cached" if cached else "uncached"
    conf = thumbor_conf(work / f"thumbor-{name}.conf", images, work / "thumbor-results" if cached
                        else None)  # fmt: skip
    args = [str(thumbor_bin()), "-p", str(port), "-i", "127.0.0.1", "-c", str(conf),
            "--processes", str(os.cpu_count() or 1), "-l", "error"]  # fmt: skip
    return process(args, f"http://127.0.0.1:{port}", "/healthcheck")


def pixpipe(
    data_dir: Path, nats_url: str, **settings: str
) -> contextlib.AbstractContextManager[str]:
    """``pixpipe api`` on ``data_dir``; ``settings``: more ``PIXPIPE_*`` variables."""
    port = free_port()
    exe = Path(sys.executable).parent / "pixpipe"
    args = [str(exe), "api", "--data-dir", str(data_dir), "--port", str(port)]
    env = {
        "PIXPIPE_BUS__URL": nats_url,
        "PIXPIPE_API__SIGNING_SECRET": SECRET,
        # Renders queue in the pool (one process per core) rather than answer 503.
        "PIXPIPE_LIMITS__TRANSFORM_CONCURRENCY": "256",
        **settings,
    }
    return process(args, f"http://127.0.0.1:{port}", "/readyz", **env)


# --- load ------------------------------------------------------------------------------------


async def _load(
    next_url: Callable[[], str], seconds: float, concurrency: int, expect_cache: str | None
) -> Sample:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = await client.get(next_url())
                if response.status_code != 200 or not response.content:
                    raise SystemExit(
                        f"{response.url}: {response.status_code} {response.text[:300]}"
                    )
                if expect_cache and response.headers.get("x-cache") != expect_cache:
                    raise SystemExit(f"{response.url}: expected X-Cache {expect_cache}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return Sample(len(ordered) / elapsed, at(0.5), at(0.99), len(ordered), at(0.95))


def load(next_url: Callable[[], str], seconds: float, concurrency: int,
         expect_cache: str | None = None) -> Sample:  # fmt: skip
    return asyncio.run(_load(next_url, seconds, concurrency, expect_cache))


def wrk(url: str, seconds: float, concurrency: int) -> Sample:
    """Debian's wrk, for the cached requests: a C client spends far less of the shared cores
    per request than Python does, which matters at hundreds of requests per second."""
    done = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
         "--timeout", "60s", url], capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = done.stdout
    if bad := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise SystemExit(f"{url}: {bad.group(1)} answers were not 200")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cut = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+[a-z]+)", out, re.MULTILINE))
    return Sample(rps, _ms(cut["50"]), _ms(cut["99"]), total)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cached_load(url: str, seconds: float, concurrency: int) -> Sample:
    if shutil.which("wrk"):
        return wrk(url, seconds, concurrency)
    return load(lambda: url, seconds, concurrency)


def check_output(url: str) -> None:
    """Both servers make the same thing: an 800x600 JPEG."""
    data = httpx.get(url, timeout=120).raise_for_status().content
    image = pyvips.Image.new_from_buffer(data, "")
    loader = image.get("vips-loader")
    if (image.width, image.height) != (800, 600) or not loader.startswith("jpeg"):
        raise SystemExit(f"{url}: got {image.width}x{image.height} from {loader}")


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Bench:
    tag: str
    source: Path
    thumbor: str
    thumbor_cached: str
    pixpipe: str
    counter: int = 0

    def pixpipe_url(self, key: str) -> str:
        return self.pixpipe + transform_path(SECRET, OPTIONS, key)

    def thumbor_url(self, base: str, options: str = THUMBOR_OPTIONS) -> str:
        return f"{base}/unsafe/{options}/{self.tag}{self.source.suffix}"

    def uncached_key(self) -> str:
        self.counter += 1
        if self.counter >= LINKS:
            raise SystemExit(f"more than {LINKS} uncached requests: raise LINKS")
        return f".bench/{self.tag}/{self.counter:05d}{self.source.suffix}"


def link_sources(
    originals: Path, images: Path, sources: Mapping[str, Callable[[], Path]] = SOURCES
) -> list[tuple[str, Path]]:
    """The sources, as thumbor's images and as pixpipe's originals (with the links)."""
    out = []
    for index, (label, where) in enumerate(sources.items()):
        source = where()
        tag = f"src{index}"
        shutil.copyfile(source, images / f"{tag}{source.suffix}")
        folder = originals / ".bench" / tag
        folder.mkdir(parents=True)
        first = folder / f"cached{source.suffix}"
        shutil.copyfile(source, first)
        for i in range(1, LINKS):
            os.link(first, folder / f"{i:05d}{source.suffix}")
        out.append((label, first))
    return out


def measure(bench: Bench, mode: str, seconds: float, concurrency: int) -> Sample:
    if mode == "thumbor uncached":
        url = bench.thumbor_url(bench.thumbor)
        return load(lambda: url, seconds, concurrency)
    if mode == PLAIN:
        url = bench.thumbor_url(bench.thumbor, THUMBOR_PLAIN)
        return load(lambda: url, seconds, concurrency)
    if mode == "thumbor cached":
        url = bench.thumbor_url(bench.thumbor_cached)
        httpx.get(url, timeout=120).raise_for_status()
        return cached_load(url, seconds, concurrency)
    if mode == "pixpipe uncached":
        return load(lambda: bench.pixpipe_url(bench.uncached_key()), seconds, concurrency, "miss")
    url = bench.pixpipe_url(f".bench/{bench.tag}/cached{bench.source.suffix}")
    httpx.get(url, timeout=120).raise_for_status()
    if httpx.get(url, timeout=120).headers.get("x-cache") != "hit":
        raise SystemExit(f"{url}: not served from the cache")
    return cached_load(url, seconds, concurrency)  # pixpipe cached, at either load


def run(args: argparse.Namespace) -> dict[str, dict[str, list[Sample]]]:
    if not all(where().exists() for where in SOURCES.values()):
        corpus.build(count=1)
    results: dict[str, dict[str, list[Sample]]] = {}
    with tempfile.TemporaryDirectory(prefix="pixpipe-bench-") as tmp:
        work = Path(tmp)
        images, data = work / "thumbor-images", work / "pixpipe-data"
        images.mkdir()
        sources = link_sources(data / "originals", images)
        with (
            EmbeddedServer(work / "nats") as nats,
            pixpipe(data, nats.url) as pix,
            thumbor(images, work, False) as thu,
            thumbor(images, work, True) as thu_c,
        ):
            benches = [Bench(f"src{i}", p, thu, thu_c, pix) for i, (_, p) in enumerate(sources)]
            for bench in benches:  # correctness, and warm-up (render pools, imports)
                check_output(bench.thumbor_url(thu))
                check_output(bench.pixpipe_url(bench.uncached_key()))
                load(lambda b=bench: b.pixpipe_url(b.uncached_key()), 2, args.concurrency)
                load(lambda b=bench: b.thumbor_url(thu), 2, args.concurrency)
            for r in range(args.runs):
                for (label, _), bench in zip(sources, benches, strict=True):
                    for mode in (*MODES, QUIET, PLAIN):
                        seconds = args.seconds if "uncached" in mode else args.seconds / 2
                        concurrency = 1 if mode == QUIET else args.concurrency
                        sample = measure(bench, mode, seconds, concurrency)
                        results.setdefault(label, {}).setdefault(mode, []).append(sample)
                        report = (
                            f"run {r + 1}/{args.runs}  {label:24} {mode:22} {sample.rps:8.1f} "
                            f"req/s  p50 {sample.p50:7.1f} ms  "
                            f"p99 {sample.p99:7.1f} ms"
                        )
                        print(report, file=sys.stderr)
    return results


# --- report ----------------------------------------------------------------------------------


def _median(samples: list[Sample], what: Callable[[Sample], float]) -> float:
    return statistics.median(what(s) for s in samples)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _thumbor_version() -> str:
    python = THUMBOR_VENV / "bin" / "python"
    done = subprocess.run([str(python), "-c", "import thumbor, cv2, PIL; print(thumbor.__version__,"
                           " PIL.__version__, cv2.__version__)"],
                          capture_output=True, text=True)  # fmt: skip
    thumbor, pil, cv2 = (done.stdout.split() + ["?"] * 3)[:3]
    return f"thumbor {thumbor} (Pillow {pil}, OpenCV {cv2})"


def markdown(results: dict[str, dict[str, list[Sample]]], args: argparse.Namespace) -> str:
    runs = len(next(iter(next(iter(results.values())).values())))
    lines = [
        "### On-the-fly transforms: pixpipe vs thumbor",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores (`nproc`), {_cpu_model()}; shared with other work "
        f"(load average {args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after), so "
        "noisy: read the ratios",
        f"- command: `.venv/bin/python -m benchmarks.transforms --runs {args.runs} "
        f"--seconds {args.seconds:g} --concurrency {args.concurrency}`",
        f"- {_thumbor_version()}, one process per core, feature detector for `smart`; "
        f"pixpipe {_pixpipe_version()} (libvips {pyvips.version(0)}.{pyvips.version(1)}."
        f"{pyvips.version(2)}), `pixpipe api`, renders in one process per core",
        f"- operation: 800x600 smart cover crop, JPEG q80 progressive: pixpipe `{OPTIONS}`, "
        f"thumbor `{THUMBOR_OPTIONS}`",
        f"- load: {args.concurrency} requests in flight (but `1 in flight`), {args.seconds:g} s "
        f"per uncached and {args.seconds / 2:g} s per cached measurement, uncached from an async "
        f"httpx client, cached from {'wrk' if shutil.which('wrk') else 'the same client'}, on "
        f"the same cores as the servers; medians of {runs} interleaved runs",
        "",
        "| source | server | req/s | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for label, modes in results.items():
        for mode in (*MODES, QUIET, PLAIN):
            samples = modes[mode]
            rps = _median(samples, lambda s: s.rps)
            p50 = _median(samples, lambda s: s.p50)
            p99 = _median(samples, lambda s: s.p99)
            lines.append(f"| {label} | {mode} | {rps:.1f} | {p50:.1f} | {p99:.1f} |")
    lines += [
        "",
        "| source | pixpipe ÷ thumbor, uncached (target ≥ 1.5×) | pixpipe cached ÷ thumbor "
        "uncached (target ≥ 20×) | pixpipe cached p99, loaded / 1 in flight (target < 20 ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, modes in results.items():
        thumbor = _median(modes["thumbor uncached"], lambda s: s.rps)
        uncached = _median(modes["pixpipe uncached"], lambda s: s.rps) / thumbor
        cached = _median(modes["pixpipe cached"], lambda s: s.rps) / thumbor
        p99 = _median(modes["pixpipe cached"], lambda s: s.p99)
        quiet = _median(modes[QUIET], lambda s: s.p99)
        lines.append(
            f"| {label} | {uncached:.2f}× {_met(uncached >= 1.5)} | {cached:.1f}× "
            f"{_met(cached >= 20)} | {p99:.1f} ms {_met(p99 < 20)} / {quiet:.1f} ms "
            f"{_met(quiet < 20)} |"
        )
    return "\n".join([*lines, "", *NOTES]) + "\n"


NOTES = [
    "Reading the numbers:",
    "",
    "- thumbor's `smart` runs OpenCV's feature detector on the decoded image, and Pillow "
    "decodes every pixel of the source first; that is most of its time. Its plain centre crop "
    "(`no smart`) is given for context: the resize alone, still without shrink-on-load.",
    "- pixpipe renders with libvips' thumbnail path (shrink-on-load for JPEG, one pass, "
    "attention crop) in one render process per core; a result is then served from memory, or "
    "from the cache store when evicted, keyed by the source's etag.",
    "- Cached requests are answered by one API process. With several requests in flight each "
    "waits for the ones before it, so the loaded p99 is mostly queueing behind the load "
    "generator's other requests; the `1 in flight` row is the service time itself. Both are "
    "measured with the load generator and other work sharing the same two cores: on a busy "
    "machine the absolute figures move a lot between runs, the ratios much less.",
]


def _met(ok: bool) -> str:
    return "✓" if ok else "✗"


def _pixpipe_version() -> str:
    from importlib.metadata import version

    return version("pixpipe")


def _raw(sample: Sample) -> dict[str, float]:
    return {"rps": sample.rps, "p50_ms": sample.p50,
            "p99_ms": sample.p99, "requests": sample.requests}  # fmt: skip


def arguments(doc: str, argv: list[str] | None, seconds: str) -> argparse.Namespace:
    """The load benchmarks' command line (``--runs --seconds --concurrency --no-write``), the
    load average before, and SIGTERM stopping the servers on the way out."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (medians)")
    parser.add_argument("--seconds", type=float, default=15.0, help=seconds)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md alone")
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return args


def main(argv: list[str] | None = None) -> None:
    args = arguments(__doc__ or "", argv, "per uncached measurement")
    results = run(args)
    raw = {
        label: {mode: [_raw(x) for x in samples] for mode, samples in modes.items()}
        for label, modes in results.items()
    }
    publish(markdown(results, args), raw, "transforms", args)


def publish(section: str, raw: object, name: str, args: argparse.Namespace) -> None:
    """Print the section, keep the raw samples in ``out/{name}.json`` and, unless
    ``--no-write``, rewrite the ``name`` section of RESULTS.md."""
    print(section)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / f"{name}.json").write_text(json.dumps(raw, indent=1))
    if not args.no_write:
        update_results(section, name=name)


if __name__ == "__main__":
    main()
