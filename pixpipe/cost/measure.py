"""Measuring what one image costs: CPU seconds and peak RSS, each run in a fresh process.

Every (image, thread count) runs in its own child process so that ``ru_maxrss`` is that one
render's peak. Children come from a ``forkserver``: a child spawned straight from this process
would inherit our own high-water mark (Linux carries it across fork and exec).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Limits
from ..errors import PixpipeError
from ..recipe import Recipe
from .model import Profile

# A few camera-sized photos (12 MP, both orientations, and a 24 MP one for the worst case).
SYNTHETIC_SIZES = ((4000, 3000), (3000, 4000), (4032, 3024), (6000, 4000))
DEFAULT_LIMIT = 12  # images measured from a folder (each costs two fresh processes)


@dataclass(frozen=True, slots=True)
class Run:
    """One render of one image in a fresh process with ``threads`` libvips threads."""

    threads: int
    cpu_s: float
    wall_s: float
    peak_rss_mb: float


@dataclass(frozen=True, slots=True)
class ImageMeasure:
    """One image of the sample: its size and its runs (one per thread count)."""

    name: str
    bytes: int
    width: int
    height: int
    runs: tuple[Run, ...]

    @property
    def profile(self) -> Profile:
        one, most = self.runs[0], self.runs[-1]
        rss = max(r.peak_rss_mb for r in self.runs)
        return Profile(one.cpu_s, most.wall_s, most.threads, rss)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "bytes": self.bytes, "width": self.width, "height": self.height,
            "runs": [
                {"threads": r.threads, "cpu_s": r.cpu_s, "wall_s": r.wall_s,
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
    def average(self) -> Profile:
        profiles = [i.profile for i in self.images]
        return Profile(
            statistics.fmean(p.cpu_s for p in profiles),
            statistics.fmean(p.parallel_s for p in profiles),
            profiles[0].threads,
            statistics.fmean(p.peak_rss_mb for p in profiles),
        )

    @property
    def worst(self) -> Profile:
        """The slowest image's timings, with the highest peak RSS of any image."""
        slowest = max((i.profile for i in self.images), key=lambda p: p.cpu_s)
        rss = max(i.profile.peak_rss_mb for i in self.images)
        return Profile(slowest.cpu_s, slowest.parallel_s, slowest.threads, rss)

    def to_dict(self) -> dict[str, object]:
        sizes = [i.bytes for i in self.images]
        return {
            "synthetic": self.synthetic,
            "variants": list(self.variants),
            "images": [i.to_dict() for i in self.images],
            "failed": [{"name": n, "message": m} for n, m in self.failed],
            "average": _profile_dict(self.average, statistics.fmean(sizes)),
            "worst": _profile_dict(self.worst, max(sizes)),
        }


def _profile_dict(profile: Profile, input_bytes: float) -> dict[str, float]:
    return {
        "cpu_s": profile.cpu_s,
        "parallel_s": profile.parallel_s,
        "threads": profile.threads,
        "parallel_fraction": profile.parallel_fraction,
        "peak_rss_mb": profile.peak_rss_mb,
        "input_bytes": input_bytes,
    }


def thread_counts() -> tuple[int, ...]:
    """One libvips thread (single-threaded work), and two if this machine has the cores."""
    return (1, 2) if (os.cpu_count() or 1) >= 2 else (1,)


def measure(
    paths: Sequence[Path], recipe: Recipe, limits: Limits | None = None,
    threads: Iterable[int] | None = None, synthetic: bool = False,
) -> Sample:  # fmt: skip
    """Render each image once per thread count, each time in a fresh process, one at a time.

    Runs are sequential on purpose: two renders side by side would share the cores we time.
    """
    limits = limits or Limits()
    counts = tuple(threads or thread_counts())
    runs: dict[Path, list[Run]] = {p: [] for p in paths}
    sizes: dict[Path, tuple[int, int]] = {}
    failed: dict[Path, str] = {}
    for count in counts:
        for path in paths:
            if path in failed:
                continue
            try:
                run, sizes[path] = _in_fresh_process(path, recipe, limits, count)
                runs[path].append(run)
            except PixpipeError as exc:
                failed[path] = f"{exc.kind}: {exc}"
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
    path: Path, recipe: Recipe, limits: Limits, threads: int
) -> tuple[Run, tuple[int, int]]:
    from ..pool import init_process

    context = multiprocessing.get_context("forkserver")
    # Importing pyvips starts no thread, so the server may hold it ready for every child.
    context.set_forkserver_preload(["pixpipe.imaging"])
    with ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=init_process, initargs=(threads,)
    ) as pool:
        return pool.submit(_probe, path.read_bytes(), recipe, limits, threads).result()


def _probe(
    data: bytes, recipe: Recipe, limits: Limits, threads: int
) -> tuple[Run, tuple[int, int]]:
    """In the child: warm libvips up on a tiny image, then time the real one."""
    import pyvips

    from ..imaging import render

    warm = pyvips.Image.black(320, 240, bands=3).jpegsave_buffer()
    render(warm, recipe, limits)
    cpu, wall = time.process_time(), time.perf_counter()
    source = render(data, recipe, limits).source
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Run(threads, cpu, wall, _peak_rss_mb()), (source.width, source.height)


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
        path = folder / f"synthetic-{index + 1}-{width}x{height}.jpg"
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
    from ..batch import find_jobs

    return [job.path for job in find_jobs(inputs)][:limit]
