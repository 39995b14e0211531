"""Turn measurements into the markdown table, the RESULTS.md section and the chart."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.measure import Measured

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
CHART = HERE / "throughput.png"

# (numerator, denominator, recipe or None for every recipe, target ratio)
RATIO_TARGETS = (
    ("pixpipe", "sharp", "two-thumbnails", 1.6),
    ("pixpipe", "sharp", "default-six", 2.0),
    ("pixpipe", "sharp-mozjpeg", None, None),
    ("pixpipe", "pixpipe-lib", None, 0.9),  # the CLI within 10% of the library
    ("pixpipe", "pillow", None, None),
    ("pixpipe", "imagemagick", None, 8.0),
)
BIG_CPU_TARGET_S, BIG_RSS_TARGET_MB = 0.4, 150.0


@dataclass
class Batch:
    """Every run of one tool on one recipe."""

    tool: str
    recipe: str
    runs: list[Measured] = field(default_factory=list)

    @property
    def images(self) -> int:
        return int(self.runs[0].report.get("images", self.runs[0].report.get("done", 0)))

    @property
    def failed(self) -> int:
        return max(int(r.report.get("failed", 0)) for r in self.runs)

    @property
    def rate(self) -> float:
        """Median images per second, from each tool's own clock (start-up excluded)."""
        return statistics.median(_images(r) / float(r.report["seconds"]) for r in self.runs)

    @property
    def peak_rss_mb(self) -> float:
        return statistics.median(r.peak_rss_mb for r in self.runs)


@dataclass
class Big:
    """Every run of one tool on the 8000x5000 JPEG through the default six."""

    tool: str
    runs: list[Measured] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        # A tool's own CPU clock around the work when it reports one, else the whole process.
        return statistics.median(float(r.report.get("cpu_seconds", r.cpu_s)) for r in self.runs)

    @property
    def wall_s(self) -> float:
        return statistics.median(float(r.report.get("seconds", r.wall_s)) for r in self.runs)

    @property
    def peak_rss_mb(self) -> float:
        return statistics.median(r.peak_rss_mb for r in self.runs)


def _images(run: Measured) -> int:
    return int(run.report.get("images", run.report.get("done", 0)))


# --- markdown --------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, {platform.platform()}"


def versions() -> str:
    parts = []
    try:
        import pyvips

        parts.append(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}")
    except Exception:  # only a label
        pass
    try:
        import PIL

        parts.append(f"Pillow {PIL.__version__}")
    except ImportError:
        pass
    parts.append(_first_line(["/usr/bin/convert", "-version"], "ImageMagick"))
    parts.append(_first_line(["node", "--version"], "node"))
    return ", ".join(p for p in parts if p)


def _first_line(argv: list[str], label: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    match = re.search(r"\d+\.\d+[\w.\-]*", out)
    return f"{label} {match.group(0)}" if match else ""


def batch_table(batches: list[Batch]) -> str:
    rows = [
        "| recipe | tool | images | images/s (median) | peak RSS per worker (MB) | failed |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for b in batches:
        rows.append(
            f"| {b.recipe} | {b.tool} | {b.images} | {b.rate:.2f} | {b.peak_rss_mb:.0f} "
            f"| {b.failed} |"
        )
    return "\n".join(rows)


def ratio_table(batches: list[Batch]) -> str:
    by_key = {(b.tool, b.recipe): b for b in batches}
    recipes = list(dict.fromkeys(b.recipe for b in batches))
    rows = ["| ratio | recipe | measured | target | met |", "| --- | --- | ---: | ---: | --- |"]
    for num, den, only, target in RATIO_TARGETS:
        for recipe in recipes if only is None else [only]:
            a, b = by_key.get((num, recipe)), by_key.get((den, recipe))
            if a is None or b is None:
                continue
            ratio = a.rate / b.rate
            goal = f"≥ {target:g}x" if target else "—"
            met = "—" if target is None else ("yes" if ratio >= target else "**no**")
            rows.append(f"| {num} / {den} | {recipe} | {ratio:.2f}x | {goal} | {met} |")
    return "\n".join(rows)


def big_table(bigs: list[Big]) -> str:
    rows = [
        "| tool | CPU s (one core) | wall s | peak RSS (MB) | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for big in bigs:
        target, met = "—", "—"
        if big.tool == "pixpipe":
            target = f"≤ {BIG_CPU_TARGET_S:g} s CPU, ≤ {BIG_RSS_TARGET_MB:g} MB"
            ok = big.cpu_s <= BIG_CPU_TARGET_S and big.peak_rss_mb <= BIG_RSS_TARGET_MB
            met = "yes" if ok else "**no**"
        rows.append(
            f"| {big.tool} | {big.cpu_s:.3f} | {big.wall_s:.3f} | {big.peak_rss_mb:.0f} "
            f"| {target} | {met} |"
        )
    return "\n".join(rows)


def markdown(batches: list[Batch], bigs: list[Big], command: str, runs: int) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"### Run of {when}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        f"- versions: {versions()}",
        f"- {runs} runs per cell, medians; 2 workers per tool (2 images in flight); "
        "JPEG q80 progressive, EXIF-oriented, stripped.",
        "",
    ]
    if batches:
        parts += ["#### Throughput", "", batch_table(batches), "", ratio_table(batches), ""]
    if bigs:
        parts += ["#### One 8000x5000 JPEG through the default six", "", big_table(bigs), ""]
    return "\n".join(parts)


def update_results(section: str, name: str = "bench") -> None:
    """Replace the generated section ``name`` of RESULTS.md (between its ``<!-- name:start -->``
    and ``<!-- name:end -->`` markers), keeping the rest; each benchmark owns one section."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{section.rstrip()}\n{end}\n"
    if RESULTS.exists():
        text = RESULTS.read_text()
        if start in text and end in text:
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1].lstrip("\n")
            RESULTS.write_text(head + block + ("\n" + tail if tail else ""))
            return
        RESULTS.write_text(text.rstrip() + "\n\n" + block)
        return
    RESULTS.write_text("# Benchmark results\n\n" + block)


# --- chart -----------------------------------------------------------------------------------


def chart(batches: list[Batch], path: Path = CHART) -> Path:
    """Grouped bars: images/s per tool, one group per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = list(dict.fromkeys(b.recipe for b in batches))
    tools = list(dict.fromkeys(b.tool for b in batches))
    rates = {(b.tool, b.recipe): b.rate for b in batches}
    width = 0.8 / max(1, len(tools))
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for i, tool in enumerate(tools):
        xs = [r + (i - (len(tools) - 1) / 2) * width for r in range(len(recipes))]
        ys = [rates.get((tool, recipe), 0.0) for recipe in recipes]
        bars = ax.bar(xs, ys, width, label=tool)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(recipes)), recipes)
    ax.set_ylabel("images/s (2 workers, median)")
    ax.set_title("Throughput on ~1.2 MB 6 MP JPEGs, q80 progressive output")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
