"""What face detection (``g:face``) costs: ``face_box`` on the astronaut at three sizes.

    .venv/bin/python -m benchmarks.faces [--runs 7]

The astronaut fixture (512x512, Eileen Collins, NASA) as is, and enlarged to 2000x1333 and
6000x4000 (cut to a camera's 3:2), each held in memory so that only ``face_box`` is timed: the
greyscale copy of at most 640 px (libvips) and the cascade's scan (OpenCV), medians of
``--runs``. The scan runs on OpenCV's own threads and then on one, as in a render pool of one
process per core. Loading is timed apart: ``import cv2`` once (the first ``g:face`` of a
process pays it) and parsing the cascade's XML (median). Prints a markdown table for
``RESULTS.md``; writes nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pyvips

from benchmarks.report import machine
from pixpipe.imaging import faces

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

ASTRONAUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "astronaut.jpg"
SIZES = ((512, 512), (2000, 1333), (6000, 4000))


def median_ms(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def sized(source: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """The astronaut enlarged to ``width`` and cut to ``height`` from the top (her face
    stays in), in memory."""
    image = source if source.width == width else source.resize(width / source.width)
    return image.crop(0, 0, width, height).copy_memory()


def load_times(runs: int) -> tuple[float, float]:
    """(``import cv2``, one cascade parse) in ms: the import once, the parse a median."""
    start = time.perf_counter()
    importlib.import_module("cv2")  # with numpy, which nothing here has loaded yet
    imported = (time.perf_counter() - start) * 1000

    def parse() -> None:
        faces.cascade.cache_clear()
        faces.cascade()

    return imported, median_ms(parse, runs)


def scan(grey: npt.NDArray[np.uint8]) -> object:
    """The cascade's scan alone, with ``face_box``'s parameters."""
    return faces.cascade().detectMultiScale(
        grey, scaleFactor=faces.SCALE_STEP, minNeighbors=faces.MIN_NEIGHBOURS,
        minSize=(faces.MIN_FACE, faces.MIN_FACE),
    )  # fmt: skip


def row(image: pyvips.Image, runs: int, threads: int) -> str:
    """One size: the copy, the scan and ``face_box`` on ``threads``, then both on one."""
    import cv2

    grey = faces.detection_copy(image)
    box = faces.face_box(image)
    copy = median_ms(partial(faces.detection_copy, image), runs)
    detect, whole = partial(scan, grey), partial(faces.face_box, image)
    cv2.setNumThreads(threads)
    many, total = median_ms(detect, runs), median_ms(whole, runs)
    cv2.setNumThreads(1)
    one, total_one = median_ms(detect, runs), median_ms(whole, runs)
    cv2.setNumThreads(threads)
    found = "none" if box is None else ", ".join(f"{v:.3f}" for v in box)
    return (
        f"| {image.width}x{image.height} | {grey.shape[1]}x{grey.shape[0]} | {copy:.1f} "
        f"| {many:.1f} | {total:.1f} | {one:.1f} | {total_one:.1f} | {found} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (median)")
    args = parser.parse_args()
    imported, parsed = load_times(args.runs)
    import cv2

    threads = cv2.getNumThreads()
    source = pyvips.Image.new_from_file(str(ASTRONAUT))
    table = [row(sized(source, w, h), args.runs, threads) for w, h in SIZES]
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"face_box, {faces.CASCADE}, medians of {args.runs} runs")
    print(f"{machine()}; OpenCV {cv2.__version__} ({threads} threads), load average {load}")
    print(f"load: import cv2 {imported:.0f} ms (once), cascade parse {parsed:.1f} ms\n")
    print(
        "| image | scanned | grey copy (ms) | scan (ms) | face_box (ms) | scan, 1 thread (ms)"
        " | face_box, 1 thread (ms) | box (left, top, width, height) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(table))


if __name__ == "__main__":
    main()
