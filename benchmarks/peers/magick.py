"""The ImageMagick peer: Debian's ``/usr/bin/convert`` (``/usr/local/bin/convert`` here is a
stand-in), one process per input that decodes once (with the ``jpeg:size`` hint, IM's
shrink-on-load) and writes every variant, ``-j`` processes at a time, one thread each."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchmarks.peers.driver import main
from benchmarks.recipes import QUALITY, RECIPES, Size, draft_size

CONVERT = "/usr/bin/convert"
ENV = {**os.environ, "MAGICK_THREAD_LIMIT": "1", "OMP_NUM_THREADS": "1"}


def command(path: Path, recipe: str, out: Path, width: int, height: int) -> list[str]:
    """One ``convert`` call: decode once, then ``( +clone … -write … +delete )`` per variant."""
    hint_w, hint_h = draft_size(width, height, recipe)
    argv = [CONVERT, "-define", f"jpeg:size={hint_w}x{hint_h}", str(path), "-auto-orient",
            "-strip"]  # fmt: skip
    for size in RECIPES[recipe]:
        target = out / size.name / f"{path.stem}.jpg"
        argv += ["(", "+clone", *_geometry(size), "-quality", str(QUALITY),
                 "-interlace", "Plane", "-write", str(target), "+delete", ")"]  # fmt: skip
    return [*argv, "null:"]


def _geometry(size: Size) -> list[str]:
    box = f"{size.width}x{size.height}"
    if size.fit == "cover":
        return ["-resize", f"{box}^", "-gravity", "center", "-extent", box]
    return ["-resize", f"{box}>"]


def header_size(path: Path) -> tuple[int, int]:
    """Width and height from the JPEG header, without decoding (and without libvips)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def process_one(path: Path, recipe: str, out: Path) -> None:
    for size in RECIPES[recipe]:
        (out / size.name).mkdir(parents=True, exist_ok=True)
    argv = command(path, recipe, out, *header_size(path))
    subprocess.run(argv, check=True, env=ENV, capture_output=True)


if __name__ == "__main__":
    main(process_one, threads=True)
