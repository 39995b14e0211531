"""Measuring what one image costs: CPU seconds and peak RSS, at a few CPU limits.

Every (image, CPU limit) runs in its own child process so that ``ru_maxrss`` is that one
render's peak. Children come from a ``forkserver``: a child spawned straight from this process
would inherit our own high-water mark (Linux carries it across fork and exec).

A CPU limit models Lambda's CPU share (1769 MB is one vCPU): a whole number of vCPUs is that
many cores (CPU affinity); a fraction is one core of which the child may use only that share,
stopped and continued by the parent the way a CFS quota throttles a Lambda.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Limits
from ..errors import PixpipeError
from ..recipe import Recipe
from .model import Profile

# A few camera-sized photos (12 MP, both orientations, and a 24 MP one for the worst case).
SYNTHETIC_SIZES = ((4000, 3000), (3000, 4000), (4032, 3024), (6000, 4000))
DEFAULT_LIMIT = 12  # images measured from a folder
THROTTLE_PERIOD_S = 0.02  # a fractional vCPU may use share × this of CPU in each period
POLL_S = 0.001
RUN_TIMEOUT_S = 300.0

Progress = Callable[[int, int, str], None]  # (runs done, runs in all, image name)


@dataclass(frozen=True, slots=True)
class CpuLimit:
    """A CPU limit to render under: ``vcpu`` cores' worth of time, ``threads`` libvips threads."""

    vcpu: float
    threads: int = 1

    @property
    def cores(self) -> int:
        return max(1, math.ceil(self.vcpu))

    @property
    def label(self) -> str:
        return f"{self.vcpu:g} vCPU, {self.threads} thread{'s' if self.threads > 1 else ''}"


def default_limits() -> tuple[CpuLimit, ...]:
    """Half a vCPU, one, and two (with one thread and with two) if this machine has two cores.

    One vCPU with one thread comes first: it is the CPU time the model bills. Two vCPUs with
    one thread shows single-threaded work getting no faster past one vCPU; with two threads,
    how much of the render libvips spreads over a second core.
    """
    limits = [CpuLimit(1), CpuLimit(0.5)]
    if _usable_cores() >= 2:
        limits += [CpuLimit(2), CpuLimit(2, threads=2)]
    return tuple(limits)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@dataclass(frozen=True, slots=True)
class Run:
    """One render of one image in a fresh process under one CPU limit."""

    vcpu: float
    threads: int
    cpu_s: float  # process CPU time of the render (all threads)
    wall_s: float  # its duration under the limit
    peak_rss_mb: float


@dataclass(frozen=True, slots=True)
class ImageMeasure:
    """One image of the sample: its size and its runs (the first at one vCPU, one thread)."""

    name: str
    bytes: int
    width: int
    height: int
    runs: tuple[Run, ...]

    def run(self, vcpu: float, threads: int = 1) -> Run | None:
        return next((r for r in self.runs if (r.vcpu, r.threads) == (vcpu, threads)), None)

    @property
    def cpu_s(self) -> float:
        """CPU seconds at one vCPU with one thread: what the model bills."""
        return self.runs[0].cpu_s

    @property
    def peak_rss_mb(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "bytes": self.bytes, "width": self.width, "height": self.height,
            "cpu_s": self.cpu_s, "peak_rss_mb": self.peak_rss_mb,
            "runs": [
                {"vcpu": r.vcpu, "threads": r.threads, "cpu_s": r.cpu_s, "wall_s": r.wall_s,
                 "peak_rss_mb": r.peak_rss_mb}
                for r in self.runs
            ],
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Sample:
    """The measured images, plus what could not be measured (name, message)."""

    images: tuple[ImageMeasure, ...]
    variants: tuple[str, ...]
    synthetic: bool = False
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def limits(self) -> tuple[CpuLimit, ...]:
        return tuple(CpuLimit(r.vcpu, r.threads) for r in self.images[0].runs)

    @property
    def speedup(self) -> tuple[int, float]:
        """(threads, wall with that many ÷ wall with one) over the whole sample.

        One ratio for every image: per image, a busy machine's noise can swamp it.
        """
        most = max(self.limits, key=lambda lim: (lim.threads, lim.vcpu))
        if most.threads <= 1:
            return 1, 1.0
        return most.threads, sum(self.walls(most)) / sum(self.walls(CpuLimit(1)))

    def _profile(self, cpu_s: float, peak_rss_mb: float) -> Profile:
        threads, ratio = self.speedup
        return Profile(cpu_s, cpu_s * min(1.0, ratio), threads, peak_rss_mb)

    @property
    def average(self) -> Profile:
        return self._profile(
            statistics.fmean(i.cpu_s for i in self.images),
            statistics.fmean(i.peak_rss_mb for i in self.images),
        )

    @property
    def worst(self) -> Profile:
        """The slowest image's CPU time, with the highest peak RSS of any image."""
        return self._profile(
            max(i.cpu_s for i in self.images),
            max(i.peak_rss_mb for i in self.images),
        )

    def walls(self, limit: CpuLimit) -> list[float]:
        """Each image's measured wall seconds under ``limit``."""
        return [r.wall_s for i in self.images if (r := i.run(limit.vcpu, limit.threads))]

    def wall(self, limit: CpuLimit) -> tuple[float, float]:
        """(average, worst) measured wall seconds under ``limit``."""
        walls = self.walls(limit)
        return statistics.fmean(walls), max(walls)

    def to_dict(self) -> dict[str, object]:
        sizes = [i.bytes for i in self.images]
        return {
            "synthetic": self.synthetic,
            "variants": list(self.variants),
            "images": [i.to_dict() for i in self.images],
            "failed": [{"name": n, "message": m} for n, m in self.failed],
            "average": _profile_dict(self.average, statistics.fmean(sizes)),
            "worst": _profile_dict(self.worst, max(sizes)),
            "limits": [
                {"vcpu": lim.vcpu, "threads": lim.threads, "memory_mb": lim.vcpu * 1769,
                 "avg_wall_s": self.wall(lim)[0], "worst_wall_s": self.wall(lim)[1]}
                for lim in self.limits
            ],
        }  # fmt: skip


def _profile_dict(profile: Profile, input_bytes: float) -> dict[str, float]:
    return {
        "cpu_s": profile.cpu_s,
        "parallel_s": profile.parallel_s,
        "threads": profile.threads,
        "parallel_fraction": profile.parallel_fraction,
        "peak_rss_mb": profile.peak_rss_mb,
        "input_bytes": input_bytes,
    }


def measure(
    paths: Sequence[Path], recipe: Recipe, limits: Limits | None = None,
    cpu_limits: Iterable[CpuLimit] | None = None, synthetic: bool = False,
    progress: Progress | None = None,
) -> Sample:  # fmt: skip
    """Render each image once per CPU limit, each time in a fresh process, one at a time.

    Runs are sequential on purpose: two renders side by side would share the cores we time.
    ``progress`` hears about every run (for a progress bar).
    """
    limits = limits or Limits()
    # One vCPU with one thread first: its CPU time is what the model bills.
    under = (CpuLimit(1), *(c for c in cpu_limits or default_limits() if c != CpuLimit(1)))
    runs: dict[Path, list[Run]] = {p: [] for p in paths}
    sizes: dict[Path, tuple[int, int]] = {}
    failed: dict[Path, str] = {}
    total, done = len(paths) * len(under), 0
    for path in paths:
        for limit in under:
            if progress:
                progress(done, total, path.name)
            if path not in failed:
                try:
                    run, sizes[path] = _in_fresh_process(path, recipe, limits, limit)
                    runs[path].append(run)
                except PixpipeError as exc:
                    failed[path] = str(exc)
            done += 1
    if progress:
        progress(done, total, "")
    images = tuple(
        ImageMeasure(p.name, p.stat().st_size, *sizes[p], tuple(r))
        for p, r in runs.items()
        if p not in failed
    )
    if not images:
        reasons = "; ".join(f"{p.name}: {m}" for p, m in failed.items()) or "no images given"
        raise ValueError(f"nothing could be measured ({reasons})")
    failures = tuple((p.name, m) for p, m in failed.items())
    return Sample(images, recipe.names, synthetic, failures)


def _in_fresh_process(
    path: Path, recipe: Recipe, limits: Limits, limit: CpuLimit
) -> tuple[Run, tuple[int, int]]:
    context = multiprocessing.get_context("forkserver")
    # Importing pyvips starts no thread, so the server may hold it ready for every child.
    context.set_forkserver_preload(["pixpipe.imaging.render"])
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_child, args=(send, path.read_bytes(), recipe, limits, limit), daemon=True
    )
    child.start()
    send.close()
    share = limit.vcpu / limit.cores
    throttle = _Throttle(child.pid, share) if share < 1 and child.pid else None
    try:
        if not receive.poll(RUN_TIMEOUT_S):
            raise PixpipeError("transient", f"{path.name}: no result in {RUN_TIMEOUT_S:g} s")
        outcome = receive.recv()
    except EOFError:
        raise PixpipeError("transient", f"{path.name}: the measuring process died") from None
    finally:
        if throttle:
            throttle.stop()
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
        receive.close()
    if isinstance(outcome, PixpipeError):
        raise outcome
    return outcome


class _Throttle:
    """Hold process ``pid`` to ``share`` of one CPU the way a CFS quota does (and Lambda below
    1769 MB): in each period it may use ``share × period`` of CPU time, then it is stopped
    (SIGSTOP) until the period ends. Counting its CPU time, not wall time, keeps the share
    right on a busy machine, where the child gets less than it is allowed anyway."""

    def __init__(self, pid: int, share: float, period: float = THROTTLE_PERIOD_S) -> None:
        self._pid, self._quota, self._period = pid, share * period, period
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cost-throttle", daemon=True)
        self._thread.start()

    def _cpu(self) -> float:
        # Linux's CPU-time clock of another process: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED).
        return time.clock_gettime(((~self._pid) << 3) | 2)

    def _loop(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            while not self._done.is_set():
                start, used_before = time.monotonic(), self._cpu()
                while self._cpu() - used_before < self._quota:
                    if self._done.wait(POLL_S) or time.monotonic() - start >= self._period:
                        break
                else:
                    os.kill(self._pid, signal.SIGSTOP)
                    self._done.wait(max(0.0, start + self._period - time.monotonic()))
                    os.kill(self._pid, signal.SIGCONT)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGCONT)  # never leave it stopped


def _child(send: Any, data: bytes, recipe: Recipe, limits: Limits, limit: CpuLimit) -> None:
    """In the child: pin to the limit's cores, set libvips up, render, send the result back."""
    from ..jobs.pool import init_process

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: limit.cores])
    init_process(limit.threads)
    try:
        send.send(_probe(data, recipe, limits, limit))
    except PixpipeError as exc:
        send.send(exc)
    finally:
        send.close()


def _probe(
    data: bytes, recipe: Recipe, limits: Limits, limit: CpuLimit
) -> tuple[Run, tuple[int, int]]:
    """Warm libvips up on a tiny image, then time the real one."""
    import pyvips

    from ..imaging import render

    warm = pyvips.Image.black(320, 240, bands=3).jpegsave_buffer()
    render(warm, recipe, limits)
    cpu, wall = time.process_time(), time.perf_counter()
    source = render(data, recipe, limits).source
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    run = Run(limit.vcpu, limit.threads, cpu, wall, _peak_rss_mb())
    return run, (source.width, source.height)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def synthetic_sample(
    folder: Path, sizes: Iterable[tuple[int, int]] = SYNTHETIC_SIZES
) -> list[Path]:
    """Write photo-like JPEGs (smooth light, texture and sensor noise) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (width, height) in enumerate(sizes):
        path = folder / f"photo-{index + 1}-{width}x{height}.jpg"
        if not path.is_file():
            _photo(width, height, seed=index + 1).jpegsave(str(path), Q=90)
        paths.append(path)
    return paths


def _photo(width: int, height: int, seed: int) -> Any:
    from pyvips import Image as vips

    xyz = vips.xyz(width, height)
    light = xyz[0] * (120 / width) + xyz[1] * (40 / height)
    # Perlin noise is slow at 12 MP: make the texture at 1/8 size and scale it up.
    small_w, small_h = max(8, width // 8), max(8, height // 8)
    cell = max(4, min(small_w, small_h) // 12)
    texture = vips.perlin(small_w, small_h, cell_size=cell, seed=seed)
    texture = texture.resize(width / small_w, vscale=height / small_h) * 50
    noise = vips.gaussnoise(width, height, sigma=6, seed=seed)
    r = light * 0.9 + texture + noise + 20
    g = light * 0.7 + texture * 0.7 + noise + 30
    b = 150 - light * 0.5 + texture * 0.5 + noise
    return r.bandjoin([g, b]).cast("uchar").copy(interpretation="srgb")


def find_images(inputs: Iterable[Path], limit: int = DEFAULT_LIMIT) -> list[Path]:
    """Up to ``limit`` non-hidden files under ``inputs`` (sorted, recursive)."""
    from ..offline import find_jobs

    return [job.path for job in find_jobs(inputs)][:limit]

__all__ = [
    "DEFAULT_LIMIT", "POLL_S", "RUN_TIMEOUT_S", "SYNTHETIC_SIZES", "THROTTLE_PERIOD_S",
    "CpuLimit", "ImageMeasure", "Progress", "Run", "Sample", "default_limits", "find_images",
    "measure", "synthetic_sample",
]  # fmt: skip
