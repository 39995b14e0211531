"""Bytes at equal visual quality: pixpipe's encoders against sharp's, scored by SSIMULACRA2.

    python -m benchmarks.quality [--repeats 3] [--no-screen] [--no-write] [--report]

Sixteen real photographs from Debian's Ubuntu Touch (``lomiri-wallpapers-16.04``, ``-20.04``)
and MATE (``mate-backgrounds``) wallpaper packages, each decoded and resized to 800 px wide
once by libvips and kept as a PNG (``corpus/quality/``, gitignored). Every encoder gets those
same pixels: pixpipe's from the decoded PNG in memory, sharp's (``sharp/quality.mjs``) from the
PNG decoded once to raw pixels. Each output, at q 50, 55, ... 95, is decoded by libvips and
scored against the 800 px PNG with the ``ssimulacra2`` package (scores are cached by the
decoded pixels, so a rerun only encodes).

Encode time is CPU milliseconds around one encode on one libvips thread
(``pyvips.concurrency_set(1)``, ``sharp.concurrency(1)``), at q80: the median of ``--repeats``
rounds per image (round 1 encodes every q; later rounds only q80, pixpipe and sharp taking
turns to go first), then the median over the images.

First a screen (``--no-screen`` reuses the last one): a grid of libvips saver settings on
four of the photos at q 60-90, to pick the candidates. Then the curves, the table of bytes at
sharp's q80 score and ``quality.png`` (``quality_report.py``); the section between the
``quality:`` markers of ``RESULTS.md`` is rewritten. ``--report`` redraws both from the last
run's ``corpus/quality/results.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyvips
from rich.console import Console

from benchmarks import corpus, report, run, tools
from pixpipe.imaging.encode import encode
from pixpipe.recipe import Variant

HERE = Path(__file__).resolve().parent
WORK = corpus.CORPUS / "quality"
SOURCES = WORK / "sources"
SCORES = WORK / "scores.json"
RESULTS_JSON = WORK / "results.json"
SCREEN_JSON = WORK / "screen.json"
SHARP_SCRIPT = HERE / "sharp" / "quality.mjs"
WIDTH = 800
QUALITIES = tuple(range(50, 100, 5))
TIMED_Q = 80
console = Console(stderr=True)

PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds")
# The photographs among those packages' wallpapers (the digital art is left out).
PHOTOS = (
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus",
    "Picture_0B_by_freespace", "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede",
    "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
    "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
    "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
    "sunset_by_Aitzol_Berasategi", "LadyBird", "RainDrops",
)  # fmt: skip
# Four unlike ones for the screen: foliage and water, sky, fur (portrait), a macro's bokeh.
SCREEN_PHOTOS = ("life_by_Aitzol_Berasategi", "Bridge_by_Sander_Klootwijk",
                 "friends_by_Aitzol_Berasategi", "LadyBird")  # fmt: skip
SCREEN_QUALITIES = (60, 70, 80, 90)


@dataclass(frozen=True)
class Encoder:
    """One contender. ``options`` are the saver's (libvips' names for pixpipe, sharp's for
    sharp); ``None`` is pixpipe's own ``encode``, as shipped."""

    name: str
    fmt: str  # jpeg, webp, avif
    tool: str  # pixpipe, sharp
    options: Mapping[str, Any] | None = field(default=None, hash=False)


_PROGRESSIVE = {"interlace": True, "optimize_coding": True}
_TRELLIS = {"trellis_quant": True, "overshoot_deringing": True, "optimize_scans": True}
_AV1 = {"compression": "av1"}

# pixpipe before issue #14, spelt out (its encode.py then).
BEFORE = {
    "jpeg": Encoder("pixpipe before", "jpeg", "pixpipe", _PROGRESSIVE),
    "webp": Encoder("pixpipe before", "webp", "pixpipe", {"effort": 4}),
    "avif": Encoder("pixpipe before", "avif", "pixpipe", {**_AV1, "effort": 4}),
}
SHARP = {
    "jpeg": Encoder("sharp", "jpeg", "sharp", {"progressive": True, "optimiseCoding": True}),
    "webp": Encoder("sharp", "webp", "sharp", {}),
    "avif": Encoder("sharp", "avif", "sharp", {}),
}
ENCODERS: tuple[Encoder, ...] = (
    BEFORE["jpeg"],
    Encoder("pixpipe", "jpeg", "pixpipe"),
    Encoder("pixpipe table 5", "jpeg", "pixpipe", {**_PROGRESSIVE, "quant_table": 5}),
    Encoder("pixpipe table 5 trellis", "jpeg", "pixpipe",
            {**_PROGRESSIVE, "quant_table": 5, "trellis_quant": True}),
    Encoder("pixpipe table 5 trellis scans", "jpeg", "pixpipe",
            {**_PROGRESSIVE, "quant_table": 5, "trellis_quant": True, "optimize_scans": True}),
    SHARP["jpeg"],
    Encoder("sharp mozjpeg", "jpeg", "sharp",
            {"progressive": True, "optimiseCoding": True, "mozjpeg": True}),
    BEFORE["webp"],
    Encoder("pixpipe", "webp", "pixpipe"),
    Encoder("pixpipe effort 6", "webp", "pixpipe", {"effort": 6}),
    SHARP["webp"],
    BEFORE["avif"],
    Encoder("pixpipe", "avif", "pixpipe"),
    Encoder("pixpipe effort 2 4:4:4", "avif", "pixpipe",
            {**_AV1, "effort": 2, "subsample_mode": "off"}),
    SHARP["avif"],
)  # fmt: skip


def screen_grid() -> tuple[Encoder, ...]:
    """libvips saver settings tried on the screen photos ("pixpipe before" is the baseline)."""
    grid = [BEFORE["jpeg"], BEFORE["webp"], BEFORE["avif"]]
    for table in range(9):
        plain = {**_PROGRESSIVE, "quant_table": table}
        if table:
            grid.append(Encoder(f"table {table}", "jpeg", "pixpipe", plain))
        grid.append(Encoder(f"table {table} trellis", "jpeg", "pixpipe", {**plain, **_TRELLIS}))
    always = {**_PROGRESSIVE, "subsample_mode": "on"}
    grid.append(Encoder("4:2:0 at every q", "jpeg", "pixpipe", always))
    for effort in (4, 5, 6):
        if effort != 4:
            grid.append(Encoder(f"effort {effort}", "webp", "pixpipe", {"effort": effort}))
        smart = {"effort": effort, "smart_subsample": True}
        grid.append(Encoder(f"effort {effort} smart subsample", "webp", "pixpipe", smart))
    photo = {"effort": 4, "preset": "photo"}
    grid.append(Encoder("effort 4 preset photo", "webp", "pixpipe", photo))
    for effort in (1, 2, 3, 4):
        if effort != 4:
            grid.append(Encoder(f"effort {effort}", "avif", "pixpipe", {**_AV1, "effort": effort}))
        full = {**_AV1, "effort": effort, "subsample_mode": "off"}
        grid.append(Encoder(f"effort {effort} 4:4:4", "avif", "pixpipe", full))
    return tuple(grid)


# --- sources ---------------------------------------------------------------------------------


def sources() -> list[Path]:
    """The 800 px PNGs, made from the Debian packages when missing."""
    pngs = [SOURCES / f"{name}.png" for name in PHOTOS]
    if all(p.exists() for p in pngs):
        return pngs
    SOURCES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True)
        root = Path(tmp) / "root"
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        found = {p.stem: p for p in root.rglob("*.jpg")}
        for name, png in zip(PHOTOS, pngs, strict=True):
            image = pyvips.Image.thumbnail(str(found[name]), WIDTH, height=100_000)
            # No profile kept: sharp would convert through it, and the pixels would differ.
            image.colourspace("srgb").cast("uchar").pngsave(str(png), keep="none")
    return pngs


# --- encoding --------------------------------------------------------------------------------


def encode_pixpipe(image: pyvips.Image, encoder: Encoder, q: int) -> bytes:
    if encoder.options is None:
        variant = Variant("q", width=image.width, format=encoder.fmt, quality=q)
        return encode(image, encoder.fmt, variant)
    saver: Callable[..., bytes] = {
        "jpeg": image.jpegsave_buffer, "webp": image.webpsave_buffer,
        "avif": image.heifsave_buffer,
    }[encoder.fmt]  # fmt: skip
    return saver(Q=q, keep="none", **encoder.options)


def pixpipe_round(png: Path, encoders: list[Encoder], qs: tuple[int, ...]) -> list[dict]:
    image = pyvips.Image.new_from_file(str(png)).copy_memory()
    rows = []
    for encoder in encoders:
        for q in qs:
            started = time.process_time()
            data = encode_pixpipe(image, encoder, q)
            cpu_ms = (time.process_time() - started) * 1000
            rows.append({"encoder": encoder.name, "fmt": encoder.fmt, "q": q, "data": data,
                         "bytes": len(data), "cpu_ms": cpu_ms})  # fmt: skip
    return rows


def sharp_round(png: Path, encoders: list[Encoder], qs: tuple[int, ...]) -> list[dict]:
    if not encoders:
        return []
    with tempfile.TemporaryDirectory(prefix="pixpipe-quality-") as out:
        job = {"image": str(png), "out": out, "qualities": list(qs), "write": True,
               "encoders": [{"name": e.name, "format": e.fmt, "options": e.options}
                            for e in encoders]}  # fmt: skip
        env = {**os.environ, "VIPS_CONCURRENCY": "1"}
        argv = ["node", str(SHARP_SCRIPT), json.dumps(job)]
        done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
        rows = [json.loads(line) for line in done.stdout.splitlines() if line]
        for row in rows:
            row["data"] = Path(row.pop("path")).read_bytes()
    return rows


# --- scoring ---------------------------------------------------------------------------------


class Scorer:
    """SSIMULACRA2 of decoded outputs against their 800 px source, cached by decoded pixels."""

    def __init__(self) -> None:
        self.cache: dict[str, float] = json.loads(SCORES.read_text()) if SCORES.exists() else {}

    def score(self, png: Path, data: bytes) -> float:
        from ssimulacra2 import compute_ssimulacra2

        decoded = pyvips.Image.new_from_buffer(data, "").colourspace("srgb").cast("uchar")
        key = f"{png.stem}:{hashlib.sha1(decoded.write_to_memory()).hexdigest()}"
        if key not in self.cache:
            distorted = io.BytesIO(decoded.pngsave_buffer(compression=0))
            self.cache[key] = float(compute_ssimulacra2(str(png), distorted))
        return self.cache[key]

    def save(self) -> None:
        SCORES.write_text(json.dumps(self.cache))


# --- the run ---------------------------------------------------------------------------------


def measure(
    pngs: list[Path], encoders: tuple[Encoder, ...], qs: tuple[int, ...], repeats: int,
    label: str,
) -> list[dict]:
    """Every encoder on every image at every q (bytes, score), then ``repeats - 1`` more rounds
    at q80 for the clock. Returns one row per image, encoder and q."""
    scorer = Scorer()
    ours = [e for e in encoders if e.tool == "pixpipe"]
    theirs = [e for e in encoders if e.tool == "sharp"]
    rows: list[dict] = []
    with run._progress() as progress:
        task = progress.add_task(label, total=len(pngs) * repeats)
        for png in pngs:
            by_key: dict[tuple[str, str, int], dict] = {}
            for turn in range(repeats):
                progress.update(task, description=f"{label}: {png.stem[:24]} round {turn + 1}")
                round_qs = qs if turn == 0 else tuple(q for q in qs if q == TIMED_Q)
                calls = [(pixpipe_round, ours), (sharp_round, theirs)]
                for call, chosen in calls if turn % 2 == 0 else calls[::-1]:
                    for row in call(png, chosen, round_qs):
                        key = (row["fmt"], row["encoder"], row["q"])
                        if key in by_key:
                            by_key[key]["cpu_ms"].append(row["cpu_ms"])
                        else:
                            by_key[key] = {**row, "image": png.stem, "cpu_ms": [row["cpu_ms"]]}
                progress.advance(task)
            progress.update(task, description=f"{label}: scoring {png.stem[:24]}")
            for row in by_key.values():
                row["score"] = scorer.score(png, row.pop("data"))
                rows.append(row)
            scorer.save()
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds per image")
    parser.add_argument("--no-screen", action="store_true", help="reuse the last screen")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--report", action="store_true", help="redraw from results.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from benchmarks import quality_report

    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.quality", *(argv or sys.argv[1:])])
    saved = json.loads(RESULTS_JSON.read_text()) if args.report else collect(args, command)
    text = quality_report.markdown(saved)
    print(text)
    if not args.no_write:
        console.print(f"chart: {quality_report.chart(saved)}")
        report.update_results(text, "quality")
        console.print(f"updated {report.RESULTS}")


def collect(args: argparse.Namespace, command: str) -> dict:
    run.ensure_requirements()
    if shutil.which("node") is None or tools._sharp_missing():
        raise SystemExit("sharp is needed: node, and npm to install benchmarks/sharp")
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    pngs = sources()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    started = time.time()
    if args.no_screen:  # the last screen, if there was one
        screen = json.loads(SCREEN_JSON.read_text()) if SCREEN_JSON.exists() else []
    else:
        chosen = [p for p in pngs if p.stem in SCREEN_PHOTOS]
        screen = measure(chosen, screen_grid(), SCREEN_QUALITIES, 1, "screen")
        SCREEN_JSON.write_text(json.dumps(screen))
    rows = measure(pngs, ENCODERS, QUALITIES, args.repeats, "curves")
    saved = {
        "command": command, "machine": report.machine(), "versions": _versions(),
        "load_before": load_before, "load_after": Path("/proc/loadavg").read_text().split()[:3],
        "minutes": (time.time() - started) / 60, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "images": [p.stem for p in pngs], "screen_images": list(SCREEN_PHOTOS),
        "repeats": args.repeats, "anchor_q": TIMED_Q, "rows": rows, "screen": screen,
    }  # fmt: skip
    RESULTS_JSON.write_text(json.dumps(saved))
    return saved


def _versions() -> str:
    sharp = subprocess.run(
        ["node", "-e", "const s=require('sharp');console.log(s.versions.sharp)"],
        cwd=HERE / "sharp", capture_output=True, text=True, check=False,
    ).stdout.strip()
    vips = ".".join(str(pyvips.version(i)) for i in range(3))
    from importlib.metadata import version

    return f"libvips {vips} (pyvips), sharp {sharp}, ssimulacra2 {version('ssimulacra2')}"


if __name__ == "__main__":
    main()
