"""pixpipe in-process: ``render(bytes, recipe, limits)`` in a pool of ``-j`` processes with
one libvips thread each, outputs written by the driver. ``PIXPIPE_STRATEGY=each`` measures
the decode-per-variant strategy instead of decode-once."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.peers.driver import main
from benchmarks.recipes import specs


def init() -> None:
    os.environ["VIPS_CONCURRENCY"] = "1"
    import pyvips

    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)


def process_one(path: Path, recipe: str, out: Path) -> None:
    from pixpipe import Limits, Recipe, render

    strategy = os.environ.get("PIXPIPE_STRATEGY", "once")
    rendered = render(path.read_bytes(), Recipe.parse(specs(recipe)), Limits(), strategy)
    for variant in rendered.variants:
        target = out / variant.name / f"{path.stem}.{variant.extension}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(variant.data)


if __name__ == "__main__":
    main(process_one, init=init)
