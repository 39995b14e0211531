"""The tools side by side: how each runs a batch, and how each runs the one big image.

Every tool is a child process (so ``measure.run`` sees its CPU and peak RSS) that prints a
JSON report with the images it did and the seconds its work took, start-up excluded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import recipes
from benchmarks.peers import magick

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARP_DIR = HERE / "sharp"
PIXPIPE = REPO / ".venv" / "bin" / "pixpipe"
JOBS = 2


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command line, its standard input and its environment."""

    argv: list[str]
    stdin: str = ""
    env: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """One contender: ``batch(files, recipe, out)`` says how it runs a batch."""

    name: str
    batch: Callable[[list[Path], str, Path], Invocation]
    max_images: int | None = None  # ImageMagick is slow: a subset says enough
    available: Callable[[], str | None] = lambda: None  # why it cannot run, or None


def _lines(files: list[Path]) -> str:
    return "".join(f"{f}\n" for f in files)


def _quiet_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", **extra}


def pixpipe_cli(files: list[Path], recipe: str, out: Path) -> Invocation:
    argv = [str(PIXPIPE), "process", *map(str, files), "-o", str(out)]
    for spec in recipes.specs(recipe):
        argv += ["-v", spec]
    return Invocation([*argv, "-j", str(JOBS), "--json"], env=_quiet_env())


def _peer(module: str, **env: str) -> Callable[[list[Path], str, Path], Invocation]:
    def batch(files: list[Path], recipe: str, out: Path) -> Invocation:
        argv = [sys.executable, "-m", f"benchmarks.peers.{module}", recipe, str(out)]
        return Invocation([*argv, "-j", str(JOBS)], _lines(files), _quiet_env(**env))

    return batch


def sharp_batch(files: list[Path], recipe: str, out: Path, mozjpeg: bool = False) -> Invocation:
    argv = ["node", str(SHARP_DIR / "bench.mjs"), recipes.as_json(recipe), str(out), str(JOBS)]
    return Invocation(argv, _lines(files), _quiet_env(SHARP_MOZJPEG="1" if mozjpeg else ""))


def sharp_mozjpeg_batch(files: list[Path], recipe: str, out: Path) -> Invocation:
    """sharp with ``mozjpeg: true``: trellis quantisation and optimised scans, as pixpipe's
    own JPEG encoder does by default (the same encoder work, for a like-for-like rate)."""
    return sharp_batch(files, recipe, out, mozjpeg=True)


def _pixpipe_missing() -> str | None:
    if not PIXPIPE.exists():
        return f"{PIXPIPE} not installed (make install)"
    try:
        import pixpipe  # noqa: F401
    except ImportError as exc:
        return f"pixpipe does not import: {exc}"
    return None


def _sharp_missing() -> str | None:
    if shutil.which("node") is None:
        return "node not found"
    if not (SHARP_DIR / "node_modules" / "sharp").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=SHARP_DIR, check=False)
    return None if (SHARP_DIR / "node_modules" / "sharp").exists() else "npm install failed"


def _magick_missing() -> str | None:
    if Path(magick.CONVERT).exists():
        return None
    return f"{magick.CONVERT} missing (apt-get install imagemagick)"


TOOLS: tuple[Tool, ...] = (
    Tool("pixpipe", pixpipe_cli, available=_pixpipe_missing),
    Tool("pixpipe-lib", _peer("pixpipe_lib"), available=_pixpipe_missing),
    Tool("sharp", sharp_batch, available=_sharp_missing),
    Tool("sharp-mozjpeg", sharp_mozjpeg_batch, available=_sharp_missing),
    Tool("pillow", _peer("pillow")),
    Tool("imagemagick", _peer("magick"), max_images=50, available=_magick_missing),
)


# --- the one big image through the default six, on one core ---------------------------------

_PIXPIPE_ONE = """
import json, resource, sys, time
from pathlib import Path
from pixpipe import Limits, Recipe, render
recipe = Recipe.parse(json.loads(sys.argv[2]))
data = Path(sys.argv[1]).read_bytes()
wall, cpu = time.perf_counter(), time.process_time()
rendered = render(data, recipe, Limits())
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"images": 1, "seconds": wall, "cpu_seconds": cpu,
                  "variants": [[v.name, v.width, v.height] for v in rendered.variants]}))
"""


def big_pixpipe(path: Path, out: Path) -> Invocation:
    """``python -c`` calling ``render``; VIPS_CONCURRENCY=1 measures one core."""
    specs = recipes.specs("default-six")
    argv = [sys.executable, "-c", _PIXPIPE_ONE, str(path), _json(specs)]
    return Invocation(argv, env=_quiet_env(VIPS_CONCURRENCY="1"))


def big_sharp(path: Path, out: Path) -> Invocation:
    argv = ["node", str(SHARP_DIR / "bench.mjs"), recipes.as_json("default-six"), str(out), "1"]
    return Invocation(argv, f"{path}\n", {**os.environ, "VIPS_CONCURRENCY": "1"})


def big_magick(path: Path, out: Path) -> Invocation:
    """``convert`` itself, one thread (no JSON report: the clock and CPU are wait4's)."""
    for size in recipes.RECIPES["default-six"]:
        (out / size.name).mkdir(parents=True, exist_ok=True)
    argv = magick.command(path, "default-six", out, *magick.header_size(path))
    return Invocation(argv, env=magick.ENV)


def _json(value: object) -> str:
    import json

    return json.dumps(value)


BIG_TOOLS: dict[str, Callable[[Path, Path], Invocation]] = {
    "pixpipe": big_pixpipe,
    "sharp": big_sharp,
    "imagemagick": big_magick,
}
