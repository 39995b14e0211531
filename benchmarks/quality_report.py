"""The rate-quality study's tables, RESULTS.md section and chart (``quality.py`` measures)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHART = HERE / "quality.png"
FORMATS = ("jpeg", "webp", "avif")
ANCHOR = "sharp"  # the curve whose q80 score the others are read at
BASELINE = "pixpipe before"
TARGET = 0.90  # the issue's: default JPEG at most 90% of sharp's bytes at sharp's score


@dataclass(frozen=True)
class Point:
    """One encoder at one q, over every image: mean bytes, mean score, median encode ms."""

    q: int
    kb: float
    score: float
    ms: float | None


def curves(rows: list[dict]) -> dict[str, dict[str, list[Point]]]:
    """``{fmt: {encoder: [Point by q]}}``, in the order the encoders were run."""
    cells: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for row in rows:
        cells[row["fmt"], row["encoder"], row["q"]].append(row)
    out: dict[str, dict[str, list[Point]]] = {fmt: {} for fmt in FORMATS}
    for (fmt, name, q), found in cells.items():
        point = Point(
            q,
            statistics.fmean(r["bytes"] for r in found) / 1000,
            statistics.fmean(r["score"] for r in found),
            statistics.median(statistics.median(r["cpu_ms"]) for r in found),
        )
        out[fmt].setdefault(name, []).append(point)
    for by_name in out.values():
        for points in by_name.values():
            points.sort(key=lambda p: p.q)
    return out


def at_score(points: list[Point], score: float) -> tuple[float, float] | None:
    """(KB, q) where the curve reaches ``score``: linear in q and log bytes between the two
    measured qualities around it; None outside the measured range."""
    for low, high in pairwise(points):
        if min(low.score, high.score) <= score <= max(low.score, high.score):
            span = high.score - low.score
            t = 0.0 if span == 0 else (score - low.score) / span
            kb = math.exp(math.log(low.kb) + t * (math.log(high.kb) - math.log(low.kb)))
            return kb, low.q + t * (high.q - low.q)
    return None


def _point(points: list[Point], q: int) -> Point | None:
    return next((p for p in points if p.q == q), None)


def format_table(by_name: dict[str, list[Point]], q: int) -> tuple[str, float]:
    """The table of one format, and the anchor score (sharp's at ``q``)."""
    anchor = _point(by_name[ANCHOR], q)
    assert anchor is not None
    base = _point(by_name.get(BASELINE, []), q)
    sharp_kb = at_score(by_name[ANCHOR], anchor.score)
    rows = [
        f"| encoder | q{q}: KB | q{q}: SSIMULACRA2 | KB at {anchor.score:.1f} | vs sharp "
        f"| q for {anchor.score:.1f} | encode ms (q{q}) | vs before |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, points in by_name.items():
        own = _point(points, q)
        hit = at_score(points, anchor.score)
        kb, ratio, q_for = ("—", "—", "—") if hit is None or sharp_kb is None else (
            f"{hit[0]:.1f}", f"{hit[0] / sharp_kb[0]:.3f}", f"{hit[1]:.1f}"
        )  # fmt: skip
        if own is None:
            continue
        ms = f"{own.ms:.1f}" if own.ms is not None else "—"
        vs = f"{own.ms / base.ms:.2f}x" if base and base.ms and own.ms else "—"
        bold = "**" if name == "pixpipe" else ""
        rows.append(
            f"| {bold}{name}{bold} | {own.kb:.1f} | {own.score:.1f} | {kb} | {ratio} | {q_for} "
            f"| {ms} | {vs} |"
        )
    return "\n".join(rows), anchor.score


def screen_table(by_name: dict[str, list[Point]], q: int) -> str:
    """The screen's settings against pixpipe before, read at its q80 score."""
    base = _point(by_name[BASELINE], q)
    assert base is not None
    rows = [
        f"| setting | KB at {base.score:.1f} | vs before | q for {base.score:.1f} "
        f"| encode ms (q{q}) | vs before |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ranked = []
    for name, points in by_name.items():
        hit, own = at_score(points, base.score), _point(points, q)
        if hit is None or own is None:
            continue
        ranked.append((hit[0] / base.kb, name, hit, own))
    for ratio, name, hit, own in sorted(ranked):
        vs = own.ms / base.ms if own.ms and base.ms else float("nan")
        rows.append(f"| {name} | {hit[0]:.1f} | {ratio:.3f} | {hit[1]:.1f} | {own.ms:.1f} "
                    f"| {vs:.2f}x |")  # fmt: skip
    return "\n".join(rows)


def headline(tables: dict[str, dict[str, list[Point]]], q: int) -> list[str]:
    """The issue's check: pixpipe's default at q80 against sharp's default at q80, and both
    curves read at sharp's q80 score."""
    lines = []
    for fmt in FORMATS:
        ours, theirs = tables[fmt]["pixpipe"], tables[fmt][ANCHOR]
        own, anchor = _point(ours, q), _point(theirs, q)
        if own is None or anchor is None:
            continue
        ratio = own.kb / anchor.kb
        line = (f"- **{fmt.upper()}**: pixpipe's default (q{q}) {own.kb:.1f} KB at "
                f"{own.score:.1f}, sharp's {anchor.kb:.1f} KB at {anchor.score:.1f}: "
                f"{ratio:.3f} of sharp's bytes")  # fmt: skip
        hit, mark = at_score(ours, anchor.score), at_score(theirs, anchor.score)
        if hit and mark:
            line += f"; read at sharp's score, {hit[0] / mark[0]:.3f}"
        if fmt == "jpeg":
            met = ratio <= TARGET and own.score >= anchor.score
            verdict = "met" if met else "**missed**"
            line += f" (target: ≤ {TARGET:.2f} at an equal or better score, {verdict})"
        lines.append(line + ".")
    return lines


def markdown(saved: dict) -> str:
    q = saved["anchor_q"]
    tables = curves(saved["rows"])
    before, after = (", ".join(saved[k]) for k in ("load_before", "load_after"))
    parts = [
        "### Bytes at equal visual quality",
        "",
        f"{saved['date']}, {saved['machine']}; {saved['versions']}. "
        f"Command: `{saved['command']}` ({saved['minutes']:.0f} min). Load average "
        f"(1, 5, 15 min) before: {before}; after: {after} (1 = one busy core).",
        "",
        f"{len(saved['images'])} photographs (Debian's `lomiri-wallpapers-16.04`, `-20.04` and "
        "`mate-backgrounds`: " + ", ".join(saved["images"]) + "), resized once by libvips to "
        "800 px wide; every encoder gets those pixels. Means over the photos of bytes and of "
        "SSIMULACRA2 (the `ssimulacra2` package, each output decoded by libvips, against the "
        f"800 px source). \"KB at S\": each curve read at sharp's q{q} score S (linear in q and "
        "log bytes between measured qualities); \"vs sharp\" is the headline ratio. Encode ms: "
        f"CPU, one thread, at q{q}, median of {saved['repeats']} interleaved rounds per photo, "
        "median over the photos. `pixpipe` is `pixpipe.imaging.encode` as shipped, `pixpipe "
        "before` its settings before this study.",
        "",
        *headline(tables, q),
        "",
        "![bytes vs SSIMULACRA2](quality.png)",
        "",
    ]
    for fmt in FORMATS:
        table, _ = format_table(tables[fmt], q)
        parts += [f"#### {fmt.upper()}", "", table, ""]
    if saved.get("screen"):
        screens = curves(saved["screen"])
        parts += [
            "#### The screen",
            "",
            f"libvips saver settings on {len(saved['screen_images'])} of the photos ("
            + ", ".join(saved["screen_images"]) + ") at q 60, 70, 80, 90; read at pixpipe "
            f"before's q{q} score on them; encode ms from one round.",
            "",
        ]
        for fmt in FORMATS:
            parts += [f"{fmt.upper()}:", "", screen_table(screens[fmt], q), ""]
    return "\n".join(parts)


def chart(saved: dict, path: Path = CHART) -> Path:
    """Three panels, one per format: mean KB against mean SSIMULACRA2, a line per encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = saved["anchor_q"]
    tables = curves(saved["rows"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), dpi=100)
    for ax, fmt in zip(axes, FORMATS, strict=True):
        for name, points in tables[fmt].items():
            style = "-" if name in ("pixpipe", ANCHOR) else "--"
            width = 2.2 if name in ("pixpipe", ANCHOR) else 1.2
            ax.plot([p.kb for p in points], [p.score for p in points], style, marker="o",
                    markersize=3, linewidth=width, label=name)  # fmt: skip
        anchor = _point(tables[fmt][ANCHOR], q)
        if anchor:
            ax.axhline(anchor.score, color="grey", linewidth=0.8, linestyle=":")
            ax.annotate(f"sharp q{q}", (anchor.kb, anchor.score), fontsize=8,
                        textcoords="offset points", xytext=(4, -12))  # fmt: skip
        ax.set_title(f"{fmt.upper()}, q 50-95, 800 px photos")
        ax.set_xlabel("mean KB per image")
        ax.set_ylabel("mean SSIMULACRA2")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
