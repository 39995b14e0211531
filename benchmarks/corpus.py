"""Build the benchmark corpus under ``benchmarks/corpus/`` (gitignored).

Sources are the large wallpapers of two Debian packages (``ukui-wallpapers``,
``sway-backgrounds``), fetched with ``apt-get download`` and unpacked with ``dpkg -x``.
From them we cut:

- ``order/NNNN.jpg``: distinct ~1.2 MB baseline JPEGs of about 6 MP (3:2, some portrait),
  each a different crop, scale, flip, grain and quality;
- ``big-8000x5000.jpg``: one baseline JPEG upscaled from the largest wallpaper;
- ``progressive-12mp.jpg`` and ``photo-12mp.png``: one of each for per-format tests.

The wallpapers are smooth digital art, far more compressible than camera photos: at 6 MP and
q90 they weigh 0.3-0.6 MB. A camera-like luminance grain (gaussian, sigma tuned per file)
brings each file to the ~1.2 MB a real 6 MP photo weighs, so the entropy decoder does the
work it does on real uploads. Idempotent: files that exist are kept.

    python -m benchmarks.corpus [--count N]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyvips
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ORDER = CORPUS / "order"
SOURCES = CORPUS / "sources"
BIG = CORPUS / "big-8000x5000.jpg"
PROGRESSIVE = CORPUS / "progressive-12mp.jpg"
PNG = CORPUS / "photo-12mp.png"

PACKAGES = ("ukui-wallpapers", "sway-backgrounds")
DEFAULT_COUNT = 1000
VERSION = "2"  # 2: grain around zero (version 1's was around 128: photos washed out white)
TARGET_BYTES = 1_200_000
TOLERANCE = 0.08  # accept 1.10-1.30 MB
MIN_SOURCE_SIDE = 2400  # "big ones": anything smaller is a phone-size wallpaper
MIN_SOURCE_BYTES = 1_000_000  # flat vector art compresses to almost nothing; skip it


@dataclass(frozen=True, slots=True)
class Cut:
    """How one corpus file is cut from a source, chosen by a seeded RNG."""

    source: Path
    left: int
    top: int
    width: int
    height: int
    out_width: int
    out_height: int
    flip: bool
    quality: int
    sigma: float


def order_path(index: int) -> Path:
    return ORDER / f"{index:04d}.jpg"


def corpus_files(count: int) -> list[Path]:
    """The first ``count`` order files (built by :func:`build`)."""
    return [order_path(i) for i in range(count)]


# --- sources ---------------------------------------------------------------------------------


def fetch_sources() -> list[Path]:
    """Download and unpack the wallpaper packages once; return the usable big images."""
    SOURCES.mkdir(parents=True, exist_ok=True)
    if not any(SOURCES.iterdir()):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True)
            root = Path(tmp) / "root"
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
            for image in _images_under(root):
                shutil.copy2(image, SOURCES / image.name)
    return sorted(p for p in SOURCES.iterdir() if _is_big_photo(p))


def _images_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"} and path.is_file():
            yield path


def _is_big_photo(path: Path) -> bool:
    image = pyvips.Image.new_from_file(str(path))
    return (
        min(image.width, image.height) >= MIN_SOURCE_SIDE
        and path.stat().st_size >= MIN_SOURCE_BYTES
    )


def load_rgb(path: Path) -> pyvips.Image:
    """A source as 8-bit sRGB without alpha (flattened on white)."""
    image = pyvips.Image.new_from_file(str(path))
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    return image.colourspace("srgb").cast("uchar")


# --- cutting ---------------------------------------------------------------------------------


def plan_cut(index: int, sources: list[Path], sizes: dict[Path, tuple[int, int]]) -> Cut:
    """Pick a distinct crop/scale/flip/quality for corpus file ``index``."""
    rng = random.Random(index)
    source = sources[index % len(sources)]
    src_w, src_h = sizes[source]
    portrait = rng.random() < 0.25
    long_side = rng.randint(2900, 3100)
    out_w, out_h = (long_side * 2 // 3, long_side) if portrait else (long_side, long_side * 2 // 3)
    # Crop between 60% and 100% of what fits, then scale to the output size.
    fit = min(src_w / out_w, src_h / out_h)
    share = rng.uniform(0.6, 1.0) * fit
    crop_w, crop_h = min(src_w, round(out_w * share)), min(src_h, round(out_h * share))
    return Cut(
        source=source,
        left=rng.randint(0, src_w - crop_w),
        top=rng.randint(0, src_h - crop_h),
        width=crop_w,
        height=crop_h,
        out_width=out_w,
        out_height=out_h,
        flip=rng.random() < 0.5,
        quality=rng.randint(88, 93),
        sigma=rng.uniform(3.0, 5.0),
    )


@functools.cache
def _decoded(path: Path) -> pyvips.Image:
    """A source decoded once per worker process (~28 MB each)."""
    return load_rgb(path).copy_memory()


def render_cut(cut: Cut) -> pyvips.Image:
    """The cut's pixels, without grain, in memory."""
    image = _decoded(cut.source).crop(cut.left, cut.top, cut.width, cut.height)
    image = image.resize(cut.out_width / cut.width, vscale=cut.out_height / cut.height)
    if cut.flip:
        image = image.fliphor()
    return image.copy_memory()


def with_grain(image: pyvips.Image, sigma: float, seed: int) -> pyvips.Image:
    """Add a camera-like luminance grain (same noise on R, G and B), around zero: libvips'
    ``gaussnoise`` centres on 128 unless told, which washed corpus version 1 out to near white."""
    noise = pyvips.Image.gaussnoise(image.width, image.height, sigma=sigma, mean=0, seed=seed)
    return (image + noise).cast("uchar")


_last_sigma: dict[Path, float] = {}


def encode_near_target(image: pyvips.Image, cut: Cut, seed: int) -> bytes:
    """Encode a baseline JPEG, tuning the grain until it lands near ``TARGET_BYTES``."""
    # Start from the grain that last worked for this source: most files then need one encode.
    sigma, best = _last_sigma.get(cut.source, cut.sigma), b""
    for _ in range(6):
        data = with_grain(image, sigma, seed).jpegsave_buffer(
            Q=cut.quality, interlace=False, optimize_coding=True, strip=True
        )
        if not best or abs(len(data) - TARGET_BYTES) < abs(len(best) - TARGET_BYTES):
            best = data
        ratio = len(data) / TARGET_BYTES
        if abs(ratio - 1) <= TOLERANCE:
            _last_sigma[cut.source] = sigma
            break
        # Size grows about linearly with sigma once grain dominates; step toward the target.
        sigma = min(20.0, max(0.5, sigma / ratio**1.2))
    return best


def make_order_file(index: int, sources: list[Path], sizes: dict[Path, tuple[int, int]]) -> int:
    """Write ``order/NNNN.jpg``; return its size in bytes."""
    cut = plan_cut(index, sources, sizes)
    data = encode_near_target(render_cut(cut), cut, seed=index)
    _write_atomic(order_path(index), data)
    return len(data)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- the special files -----------------------------------------------------------------------


def largest(sources: list[Path]) -> Path:
    def pixels(path: Path) -> int:
        image = pyvips.Image.new_from_file(str(path))
        return int(image.width * image.height)

    return max(sources, key=pixels)


def make_big(source: Path) -> None:
    """8000x5000 baseline JPEG, upscaled from the largest wallpaper."""
    image = load_rgb(source)
    image = image.resize(8000 / image.width, vscale=5000 / image.height).copy_memory()
    image = with_grain(image, 3.0, seed=8000)
    _write_atomic(BIG, image.jpegsave_buffer(Q=90, interlace=False, strip=True))


def _twelve_mp(source: Path) -> pyvips.Image:
    image = load_rgb(source)
    image = image.resize(4240 / image.width, vscale=2832 / image.height).copy_memory()
    return with_grain(image, 4.0, seed=12)


def make_progressive(source: Path) -> None:
    data = _twelve_mp(source).jpegsave_buffer(Q=90, interlace=True, strip=True)
    _write_atomic(PROGRESSIVE, data)


def make_png(source: Path) -> None:
    _write_atomic(PNG, _twelve_mp(source).pngsave_buffer(compression=6))


# --- driver ----------------------------------------------------------------------------------


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _make_special(sources: list[Path]) -> None:
    source = largest(sources)
    others = [s for s in sources if s != source] or sources
    makers = ((BIG, make_big, source), (PROGRESSIVE, make_progressive, others[0]),
              (PNG, make_png, others[-1]))  # fmt: skip
    for path, maker, src in makers:
        if not path.exists():
            maker(src)


def build(count: int = DEFAULT_COUNT, jobs: int | None = None) -> list[Path]:
    """Make whatever is missing of the corpus; return the ``count`` order files. A corpus of
    another ``VERSION`` is made again (its sources are kept)."""
    pyvips.cache_set_max(0)
    _drop_if_stale()
    sources = fetch_sources()
    if not sources:
        raise SystemExit("no usable wallpapers found in " + ", ".join(PACKAGES))
    ORDER.mkdir(parents=True, exist_ok=True)
    _make_special(sources)
    missing = [i for i in range(count) if not order_path(i).exists()]
    if missing:
        sizes = {s: _size(s) for s in sources}
        _make_order_files(missing, sources, sizes, jobs or os.cpu_count() or 1)
    return corpus_files(count)


def _drop_if_stale() -> None:
    stamp = CORPUS / ".version"
    if stamp.exists() and stamp.read_text().strip() == VERSION:
        return
    shutil.rmtree(ORDER, ignore_errors=True)
    for path in (BIG, PROGRESSIVE, PNG):
        path.unlink(missing_ok=True)
    CORPUS.mkdir(parents=True, exist_ok=True)
    stamp.write_text(VERSION + "\n")


def _size(path: Path) -> tuple[int, int]:
    image = pyvips.Image.new_from_file(str(path))
    return int(image.width), int(image.height)


def _make_order_files(
    missing: list[int], sources: list[Path], sizes: dict[Path, tuple[int, int]], jobs: int
) -> None:
    # spawn, not fork: a forked child inherits libvips' thread pool locks and can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init)
    with _progress() as progress, pool:
        task = progress.add_task("corpus", total=len(missing))
        futures = [pool.submit(make_order_file, i, sources, sizes) for i in missing]
        for future in futures:
            future.result()
            progress.advance(task)


def _worker_init() -> None:
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="order files to make")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    files = build(args.count, args.jobs)
    total = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {total / 1e9:.2f} GB in {ORDER}")


if __name__ == "__main__":
    main()
