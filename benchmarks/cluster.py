"""pixpipe on a replicated bus: images/s with 1 and 2 ``pixpipe worker`` processes against a
3-node NATS JetStream cluster (``[bus] replicas = 3``) and S3 (moto's server), and what the
bus costs per image.

    python -m benchmarks.cluster [--count N] [--runs R] [--no-write]

Per run: a fresh cluster and bucket prefix, one ``pixpipe api``, W workers of one render
process each, the two-thumbnail recipe; N corpus images uploaded with 8 in flight; the clock
runs from the first upload until every image is ``done``. CPU is read from ``/proc`` for
every process: the three nats-servers, the pixpipe processes outside rendering (api and
workers' main processes) and the render processes; the client and moto are not counted
(moto stands in for S3, whose CPU is not ours to pay). Runs of W = 1 and W = 2 interleave.

Writes the ``cluster`` section of ``benchmarks/RESULTS.md``, with the projection to
1,000 images/s and its assumptions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchmarks import corpus, recipes, report
from benchmarks.pipeline import _processed
from tests.cluster import Cluster
from tests.processes import children_of

console = Console(stderr=True)
KEY = "bench-key"
IN_FLIGHT = 8
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _variants(recipe: str) -> str:
    return "[" + ",".join(
        f'{{"name":"{s.name}","width":{s.width},"height":{s.height},"fit":"{s.fit}",'
        f'"format":"jpeg","quality":{recipes.QUALITY}}}'
        for s in recipes.RECIPES[recipe]
    ) + "]"


def _env(cluster: Cluster, endpoint: str, prefix: str, data: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PIXPIPE_", "AWS_"))}
    stores = ("originals", "variants", "backup", "quarantine", "cache")
    return {
        **base, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
        "PIXPIPE_BUS__URL": cluster.url, "PIXPIPE_BUS__REPLICAS": "3",
        "PIXPIPE_API__KEYS": KEY, "PIXPIPE_DATA_DIR": str(data), "COLUMNS": "200",
        "PIXPIPE_VARIANTS": _variants("two-thumbnails"),
        **{f"PIXPIPE_STORES__{s.upper()}": f"s3://bench/{prefix}/{s}" for s in stores},
    }  # fmt: skip


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "pixpipe", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


async def _wait_for(log: Path, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not in {log}:\n{log.read_text()[-2000:]}")
        await asyncio.sleep(0.1)


async def one_run(files: list[Path], workers: int, endpoint: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pixpipe-bench-cluster-") as tmp:
        root = Path(tmp)
        cluster = Cluster(root / "cluster").start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            await cluster.wait_for_jetstream()
            env = _env(cluster, endpoint, uuid.uuid4().hex[:8], root / "data")
            port = _free_port()
            api_log = root / "api.log"
            procs.append(_start(["api", "--port", str(port)], env, api_log))
            await _wait_for(api_log, "pixpipe is up")
            for n in range(workers):
                log = root / f"worker-{n}.log"
                procs.append(_start(["worker", "--workers", "1"], env, log))
                await _wait_for(log, "worker ready")
            return await _measure(files, cluster, procs, f"http://127.0.0.1:{port}")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
            cluster.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu(cluster: Cluster, procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    renders = [c for p in procs for c in children_of(p.pid)]
    return {
        "nats": sum(cpu_seconds(n.process.pid) for n in cluster.nodes if n.process),
        "pixpipe": sum(cpu_seconds(p.pid) for p in procs),
        "render": sum(cpu_seconds(pid) for pid in renders),
    }


async def _measure(
    files: list[Path], cluster: Cluster, procs: list[subprocess.Popen[bytes]], url: str
) -> dict[str, Any]:
    before = _cpu(cluster, procs)
    started = time.perf_counter()
    queue = list(enumerate(files))

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            n, path = queue.pop()
            response = await http.post("/v1/images", params={"key": f"b/{n:05d}.jpg"},
                                       content=path.read_bytes(),
                                       headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await asyncio.gather(*(client(http) for _ in range(IN_FLIGHT)))
        while await _processed(http) < len(files):
            await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    after = _cpu(cluster, procs)
    per_image = {k: (after[k] - before[k]) / len(files) * 1000 for k in after}
    return {"seconds": seconds, "images_per_s": len(files) / seconds, "cpu_ms": per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                 aws_secret_access_key="bench", region_name="us-east-1").create_bucket(
        Bucket="bench")  # fmt: skip
    files = corpus.build(args.count)[: args.count]
    load_before = os.getloadavg()
    results: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("cluster runs", total=2 * args.runs)
        for _ in range(args.runs):
            for workers in (1, 2):  # interleaved
                results[workers].append(asyncio.run(one_run(files, workers, endpoint)))
                progress.advance(task)
    moto.stop()
    load_after = os.getloadavg()
    section = _section(results, args, files, load_before, load_after)
    console.print(section, markup=False, highlight=False)
    if not args.no_write:
        report.update_results(section, "cluster")


def _median(runs: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
    return statistics.median(r[key][sub] if sub else r[key] for r in runs)


def _section(
    results: dict[int, list[dict[str, Any]]], args: argparse.Namespace, files: list[Path],
    load_before: tuple[float, ...], load_after: tuple[float, ...],
) -> str:  # fmt: skip
    rows = []
    for workers, runs in results.items():
        rows.append(
            f"| {workers} | {_median(runs, 'images_per_s'):.1f} | "
            f"{_median(runs, 'cpu_ms', 'render'):.1f} | {_median(runs, 'cpu_ms', 'pixpipe'):.1f} | "
            f"{_median(runs, 'cpu_ms', 'nats'):.1f} |"
        )
    two = results[2]
    render = _median(two, "cpu_ms", "render")
    outside = _median(two, "cpu_ms", "pixpipe")
    nats = _median(two, "cpu_ms", "nats")
    per_image_s = (render + outside) / 1000
    workers_cores = 1000 * per_image_s
    nats_cores = 1000 * nats / 1000
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return "\n".join([
        "### pixpipe on a 3-node JetStream cluster",
        "",
        f"{when}, {os.cpu_count()} cores. Command: `python -m benchmarks.cluster --count "
        f"{args.count} --runs {args.runs}`; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after.",
        "",
        f"{len(files)} corpus images (~1.2 MB, 6 MP), two-thumbnail recipe, `[bus] replicas = 3`, "
        "S3 = moto's server on loopback, one `pixpipe api`, workers of one render process "
        "each, 8 uploads in flight; medians of the runs (1 and 2 workers interleaved). "
        "Everything shares this machine's cores: the cluster, moto and the client too.",
        "",
        "| workers | images/s | render CPU ms/image | pixpipe outside rendering ms/image "
        "| nats-server (3 nodes) ms/image |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"**Projection to 1,000 images/s** (this recipe): {workers_cores:,.0f} worker cores "
        f"({render:.0f} ms render + {outside:.0f} ms pixpipe outside rendering per image) and "
        f"{nats_cores:,.1f} cores of nats-server in all (three replicas: each node ~"
        f"{nats_cores / 3:,.1f}). Assumes CPU per image stays flat with scale (it does from 1 "
        "to 2 workers here), S3's own cost not ours, images like the corpus; the default six "
        "costs ~4x the render CPU (RESULTS.md, imaging table).",
    ])


if __name__ == "__main__":
    main()
