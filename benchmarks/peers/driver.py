"""The shared batch loop of the peer drivers: parse arguments, fan out, time, print JSON."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

# process_one(input, recipe name, output dir) writes every variant of one input.
ProcessOne = Callable[[Path, str, Path], None]


def main(process_one: ProcessOne, threads: bool = False, init: Callable[[], None] | None = None):
    """Run ``process_one`` over the paths on stdin, ``-j`` at a time, and print the report.

    ``threads``: fan out with threads (the work is a child process, as for ImageMagick);
    otherwise with spawned processes (fork would copy libvips' thread pool locks), each
    running ``init`` once. The clock starts when the workers are up.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("out", type=Path)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    files = [Path(line) for line in sys.stdin.read().splitlines() if line]
    with _executor(args.jobs, threads, init) as pool:
        started = time.perf_counter()
        futures = [pool.submit(_safe, process_one, f, args.recipe, args.out) for f in files]
        errors = [e for e in (f.result() for f in futures) if e]
        seconds = time.perf_counter() - started
    for error in errors:
        print(error, file=sys.stderr)
    report = {"images": len(files) - len(errors), "failed": len(errors), "seconds": seconds}
    print(json.dumps(report))


def _executor(jobs: int, threads: bool, init: Callable[[], None] | None) -> Executor:
    if threads:
        return ThreadPoolExecutor(jobs)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=init)
    # Start every worker (spawn, imports, init) before the clock starts.
    list(pool.map(_ready, range(jobs * 4)))
    return pool


def _ready(_: int) -> None:
    time.sleep(0.05)


def _safe(process_one: ProcessOne, path: Path, recipe: str, out: Path) -> str | None:
    try:
        process_one(path, recipe, out)
    except Exception as exc:  # a peer's failure is reported, not fatal
        return f"{path}: {type(exc).__name__}: {exc}"
    return None
