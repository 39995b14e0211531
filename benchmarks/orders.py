"""Orders and backfills (issue 4): a batch released at once against ``pixpipe process``, and a
backfill of one new variant, projected to 300,000 originals and priced on AWS Lambda.

    python -m benchmarks.orders [--count 1000] [--runs 3] [--backfill 10000] [--no-write]

1. **Order.** ``pixpipe up`` (two render processes, the two-thumbnail recipe) and a batch of
   N: all but the last image uploaded (8 in flight), then the last one, which releases the
   batch. The clock runs from that upload to the batch's ``done`` (``GET /v1/batches/{id}``,
   polled every 20 ms). Interleaved with ``pixpipe process -j 2`` on the same files (its own
   reported seconds).
2. **Backfill.** M originals already in the originals store (the corpus, hard-linked under
   other keys), ``pixpipe worker`` (two render processes) and ``pixpipe reprocess --variant
   bf`` for a new ``bf=300x300,cover,attention,webp``: images/s, and CPU seconds per image of
   the worker and its render processes, from which the time for 300,000 originals on this
   machine and their cost on Lambda (``pixpipe.cost``'s prices, one vCPU = 1769 MB).

Writes the ``orders`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks import corpus, measure, pipeline, recipes, report, tools
from benchmarks.pipeline import KEY
from pixpipe.bus import EmbeddedServer
from pixpipe.cost.model import Profile, lambda_seconds
from pixpipe.cost.prices import Prices

RECIPE = "two-thumbnails"
NEW_VARIANT = {"name": "bf", "width": 300, "height": 300, "fit": "cover",
               "gravity": "attention", "format": "webp"}  # fmt: skip
IN_FLIGHT = 8
PROJECTED = 300_000
LAMBDA_MB = 1769


def _linked(folder: Path, count: int, prefix: str = "") -> list[Path]:
    """``count`` corpus photos under new names in ``folder`` (hard links: no copies)."""
    sources = sorted((corpus.CORPUS / "order").glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(count):
        path = folder / f"{prefix}{index:05d}.jpg"
        os.link(sources[index % len(sources)], path)
        out.append(path)
    return out


async def _order(url: str, files: list[Path]) -> float:
    """Upload all but one into a batch, then the last: seconds from it to the batch's done."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        batch = {"id": "order", "expected": len(files)}
        (await client.post("/v1/batches", json=batch)).raise_for_status()
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def upload(path: Path) -> None:
            async with slots:
                data = await asyncio.to_thread(path.read_bytes)
                params = {"key": f"order/{path.name}", "batch": "order"}
                (await client.post("/v1/images", params=params, content=data)).raise_for_status()

        await asyncio.gather(*(upload(p) for p in files[:-1]))
        await asyncio.sleep(2)  # let the folder watcher's notices of the uploads settle
        started = time.perf_counter()
        await upload(files[-1])
        while (await client.get("/v1/batches/order")).json()["state"] != "done":
            await asyncio.sleep(0.02)
        return time.perf_counter() - started


def order_run(files: list[Path]) -> tuple[float, float]:
    """One interleaved pair → (release to batch.done, ``pixpipe process`` seconds)."""
    return pipeline.order_run(files, RECIPE, _order)


def _backfill_config(tmp: Path, url: str) -> Path:
    variants = [{"name": size.name, "width": size.width, "height": size.height, "fit": size.fit,
                 "quality": recipes.QUALITY} for size in recipes.RECIPES[RECIPE]]  # fmt: skip
    lines = [f'data_dir = "{tmp / "data"}"', f'[bus]\nurl = "{url}"']
    for variant in [*variants, NEW_VARIANT]:
        lines.append("[[variants]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in variant.items()]
    config = tmp / "pixpipe.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


@contextlib.contextmanager
def _worker(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    argv = [str(tools.PIXPIPE), "worker", "--config", str(config), "--workers", str(tools.JOBS)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=tools._quiet_env())  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def backfill(count: int) -> dict[str, float]:
    """Reprocess ``count`` stored originals for the new variant → rate and CPU per image."""
    with measure.scratch("pixpipe-bench-bf-") as name:
        tmp = Path(name)
        _linked(tmp / "data" / "originals" / "backfill", count)
        with EmbeddedServer(tmp / "nats") as server:
            config = _backfill_config(tmp, server.url)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with _worker(config):
                time.sleep(3)  # the worker connects and spawns its render processes
                argv = [str(tools.PIXPIPE), "reprocess", "--variant", "bf", "--json",
                        "--config", str(config)]  # fmt: skip
                done = subprocess.run(argv, capture_output=True, check=True, env=tools._quiet_env())
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = json.loads(done.stdout)
        if result["failed"] or result["done"] != count:
            raise RuntimeError(f"backfill did not render everything: {result}")
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return {"seconds": result["seconds"], "rate": result["images_per_s"], "cpu": cpu / count}


def _lambda_cost(cpu_s: float, arch: str, prices: Prices) -> float:
    """USD for ``PROJECTED`` images at one vCPU: requests plus GB-seconds (first tier)."""
    seconds = lambda_seconds(Profile(cpu_s=cpu_s, parallel_s=cpu_s), LAMBDA_MB)
    gb_s = PROJECTED * seconds * LAMBDA_MB / 1024
    price = prices.lambda_gb_s(arch)[0][1]
    return PROJECTED * prices.lambda_request + gb_s * price


def markdown(count: int, pairs: list[tuple[float, float]], bf: dict[str, float], bf_n: int,
             command: str) -> str:  # fmt: skip
    pipe = statistics.median(p for p, _ in pairs)
    proc = statistics.median(q for _, q in pairs)
    ratios = ", ".join(f"{p / q:.2f}" for p, q in pairs)
    prices = Prices()
    hours = PROJECTED / bf["rate"] / 3600
    x86, arm = _lambda_cost(bf["cpu"], "x86", prices), _lambda_cost(bf["cpu"], "arm64", prices)
    return "\n".join([
        "### Orders and backfills",
        "",
        f"{time.strftime('%Y-%m-%d')}, {report.machine()}. Command: `{command}`",
        f"Load average when it ended: {os.getloadavg()[1]:.1f} (1 = one busy core); on a "
        "shared machine the ratio is the figure to trust, not the absolute rates.",
        "",
        f"**The order**: a batch of {count} corpus images (~1.2 MB, 6 MP), two-thumbnail "
        f"recipe, two render processes; from the upload that completes the batch to its "
        f"`done`, against `pixpipe process -j 2` on the same files; medians of {len(pairs)} "
        "interleaved runs.",
        "",
        "| path | seconds | images/s |",
        "| --- | ---: | ---: |",
        f"| batch released → `batch.done` | {pipe:.1f} | {count / pipe:.1f} |",
        f"| `pixpipe process -j 2` | {proc:.1f} | {count / proc:.1f} |",
        "",
        f"Batch / process: **{pipe / proc:.2f}** (runs: {ratios}). Target ≤ 1.15.",
        "",
        "**The backfill**: `pixpipe reprocess --variant bf` (`300x300,cover,attention,webp`) "
        f"over {bf_n} stored originals, `pixpipe worker` with two render processes.",
        "",
        "| images/s | CPU s per image | 300,000 images here | Lambda x86, 1769 MB | "
        "Lambda arm64, 1769 MB |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {bf['rate']:.1f} | {bf['cpu']:.3f} | {hours:.1f} h | ${x86:.2f} | ${arm:.2f} |",
        "",
        f"Lambda: {PROJECTED:,} requests plus GB-seconds at one vCPU per image (the CPU "
        f"seconds above, worker overhead included), {prices.region} list prices of "
        f"{prices.date}, no free tier; arm64 assumes the same speed as this machine.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="Images in the order.")
    parser.add_argument("--runs", type=int, default=3, help="Interleaved order runs.")
    parser.add_argument("--backfill", type=int, default=10_000, help="Originals to backfill.")
    parser.add_argument("--no-write", action="store_true", help="Print, do not write RESULTS.md.")
    args = parser.parse_args(argv)
    pairs = []
    with measure.scratch("pixpipe-bench-order-") as name:
        files = _linked(Path(name), args.count)
        for run in range(args.runs):
            pairs.append(order_run(files))
            print(f"order run {run + 1}: batch {pairs[-1][0]:.1f} s, process "
                  f"{pairs[-1][1]:.1f} s", file=sys.stderr)  # fmt: skip
    bf = backfill(args.backfill)
    print(f"backfill: {bf}", file=sys.stderr)
    command = "python -m benchmarks.orders " + shlex.join(argv or sys.argv[1:])
    section = markdown(args.count, pairs, bf, args.backfill, command.strip())
    print(section)
    if not args.no_write:
        report.update_results(section, "orders")


if __name__ == "__main__":
    main()
