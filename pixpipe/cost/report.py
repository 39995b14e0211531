"""Showing an estimate: a rich table for the terminal, and a power-tuning style chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from .estimate import Estimate, MemoryRow
from .measure import CpuLimit, Sample
from .model import MB_PER_VCPU

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_CHART = Path("pixpipe-cost.png")


def usd(value: float) -> str:
    return f"{value:,.2f}" if value >= 0.995 or value == 0 else f"{value:.4f}"


def print_report(
    estimate: Estimate, sample: Sample | None, console: Console, chart: Path | None = None
) -> None:
    """The sample, the per-memory table, the alternatives and a one-line answer."""
    if sample is not None:
        console.print(sample_table(sample))
        for name, message in sample.failed:
            console.print(f"[red]not measured[/red]: {name}: {message}", highlight=False)
    console.print(memory_table(estimate))
    console.print(alternatives_table(estimate))
    console.print(verdict(estimate))
    if chart is not None:
        console.print(f"chart: [bold]{chart}[/bold]")


def sample_table(sample: Sample) -> Table:
    kind = "built-in synthetic sample" if sample.synthetic else "sample"
    count = f"{len(sample.images)} image{'s' if len(sample.images) > 1 else ''}"
    title = f"{kind}: {count}, variants {', '.join(sample.variants)}"
    limits = sample.limits
    caption = (
        "CPU s: process CPU time at one vCPU. s @N: wall seconds with N vCPUs (×2: with two "
        "libvips threads). RSS MB: peak resident memory. MP: megapixels."
    )
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    table.add_column("image", overflow="fold", min_width=12)
    for header in ("MP", "MB in", "CPU s", *(_limit_header(lim) for lim in limits), "RSS MB"):
        table.add_column(header, justify="right")
    for image in sample.images:
        walls = [
            f"{r.wall_s:.2f}" if (r := image.run(lim.vcpu, lim.threads)) else "" for lim in limits
        ]
        table.add_row(
            image.name, f"{image.width * image.height / 1e6:.1f}", f"{image.bytes / 1e6:.1f}",
            f"{image.cpu_s:.2f}", *walls, f"{image.peak_rss_mb:.0f}",
        )  # fmt: skip
    for name, profile, pick in (("average", sample.average, 0), ("worst", sample.worst, 1)):
        walls = [f"{sample.wall(lim)[pick]:.2f}" for lim in limits]
        table.add_row(f"[bold]{name}[/bold]", "", "", f"{profile.cpu_s:.2f}", *walls,
                      f"{profile.peak_rss_mb:.0f}")  # fmt: skip
    return table


def _limit_header(limit: CpuLimit) -> str:
    return f"s @{limit.vcpu:g}" + (f"×{limit.threads}" if limit.threads > 1 else "")


def memory_table(estimate: Estimate) -> Table:
    w = estimate.workload
    title = (f"AWS Lambda, {w.images_per_day:,.0f} images/day "
             f"({estimate.prices.region}, prices of {estimate.prices.date})")  # fmt: skip
    table = Table("memory MB", "vCPU", "avg s", "worst s", "x86 $/month", "arm64 $/month",
                  "$/1000 images", "", title=title, title_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    best = estimate.lambda_best
    for row in estimate.rows:
        cheapest = min(row.x86, row.arm64)
        note = "" if row.fits else "[red]too small[/red]"
        if best and row.memory_mb == best.memory_mb:
            note = f"[green]cheapest ({best.arch})[/green]"
        style = None if row.fits else "dim"
        table.add_row(
            str(row.memory_mb), f"{row.vcpu:.2f}", f"{row.avg_s:.3f}", f"{row.worst_s:.3f}",
            usd(row.x86), usd(row.arm64), usd(cheapest / _images_per_month(estimate) * 1000),
            note, style=style,
        )  # fmt: skip
    return table


def alternatives_table(estimate: Estimate) -> Table:
    table = Table("where", "how many", "$/month", "$/1000 images", title="always on",
                  title_justify="left", box=box.SIMPLE_HEAD)  # fmt: skip
    plan = estimate.containers
    c = plan.container
    what = f"Fargate {c.arch} task, {c.vcpu:g} vCPU, {c.memory_gb:g} GB"
    how_many = f"{plan.count} (peak {plan.peak_concurrency}, {plan.slots} per task)"
    table.add_row(what, how_many, usd(plan.monthly), usd(plan.per_1000))
    servers = estimate.prices.servers_monthly
    if servers is not None:
        per = servers / _images_per_month(estimate) * 1000
        table.add_row("my servers (flat)", "", usd(servers), usd(per))
    return table


def verdict(estimate: Estimate) -> str:
    """The answer in two or three sentences: where to run it, what it costs, when that changes."""
    best, plan = estimate.lambda_best, estimate.containers
    volume = f"{estimate.workload.images_per_day:,.0f} images/day"
    tasks = f"{plan.count} always-on Fargate task{'s' if plan.count > 1 else ''}"
    fleet = f"{tasks}: {usd(plan.monthly)} USD/month ({usd(plan.per_1000)} per 1000 images)."
    if best is None:
        return f"[red]No Lambda memory size holds the worst image.[/red] {fleet}"
    where = {"lambda": "AWS Lambda", "containers": "always-on containers",
             "servers": "your own servers"}[estimate.cheapest]  # fmt: skip
    text = (
        f"[bold]Answer: run it on {where}.[/bold] Lambda {best.arch} at {best.memory_mb} MB "
        f"({best.seconds:.2f} s per image): [bold]{usd(best.monthly)} USD/month[/bold] for "
        f"{volume}, {usd(best.per_1000)} USD per 1000 images. {fleet}"
    )
    even = estimate.break_even_images_per_day
    if even is None:
        text += " Always-on tasks that keep up would cost more than Lambda at any volume."
    else:
        text += f" Above {even:,.0f} images/day, always-on tasks cost less than Lambda."
    return text


def _images_per_month(estimate: Estimate) -> float:
    return max(1e-9, estimate.workload.images_per_day * 730 / 24)


def write_chart(estimate: Estimate, path: Path, sample: Sample | None = None) -> Path:
    """Seconds per image and USD per month against memory, average and worst, as a PNG.

    With the ``sample``, the runs under each CPU limit are marked on the time curve at the
    memory size that buys that share (1769 MB per vCPU).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows, plan = estimate.rows, estimate.containers
    memory = [r.memory_mb for r in rows]
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(memory, [r.avg_s for r in rows], "o-", label="average image")
    left.plot(memory, [r.worst_s for r in rows], "s--", label="worst image")
    if sample is not None:
        _measured_points(left, sample)
    left.set(ylabel="seconds per image", title="time per image (model)")
    for arch, colour in (("x86", "tab:blue"), ("arm64", "tab:orange")):
        right.plot(memory, [r.monthly(arch) for r in rows], "o-", color=colour,
                   label=f"Lambda {arch}, average image")  # fmt: skip
        worst = [r.worst_x86 if arch == "x86" else r.worst_arm64 for r in rows]
        right.plot(memory, worst, "--", color=colour, label=f"Lambda {arch}, worst image")
    tasks = f"{plan.count} always-on Fargate task{'s' if plan.count > 1 else ''}"
    right.axhline(plan.monthly, color="tab:green", label=tasks)
    if estimate.prices.servers_monthly is not None:
        right.axhline(estimate.prices.servers_monthly, color="tab:gray", label="my servers")
    volume = f"{estimate.workload.images_per_day:,.0f} images/day"
    right.set(ylabel="USD per month", title=f"USD per month at {volume}")
    for axis in (left, right):
        _axes(axis, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def _axes(axis: Axes, rows: tuple[MemoryRow, ...]) -> None:
    """Log scales with plain numbers, Lambda's sizes as ticks, too-small sizes shaded."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set(xscale="log", yscale="log", xlabel="Lambda memory (MB)")
    ticks = [mb for mb in (128, 256, 512, 1024, 1769, 3008, 5120, 10240)
             if any(r.memory_mb == mb for r in rows)]  # fmt: skip
    if len(ticks) > 1:
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.xaxis.set_minor_formatter(NullFormatter())
    axis.yaxis.set_major_formatter(plain)
    axis.yaxis.set_minor_formatter(plain)
    axis.tick_params(axis="y", which="minor", labelsize="x-small")
    small = [r.memory_mb for r in rows if not r.fits]
    if small:
        axis.axvspan(min(small) * 0.9, max(small) * 1.05, color="red", alpha=0.08,
                     label="too small for the worst image")  # fmt: skip
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")


def _measured_points(axis: Axes, sample: Sample) -> None:
    """The average run under each CPU limit, scaled so one vCPU sits at the CPU time.

    On a busy machine a wall time includes waiting for a core; the ratios between limits are
    what the model takes from the measurement, and what these points show.
    """
    one = sample.wall(CpuLimit(1))[0]
    scale = sample.average.cpu_s / one if one > 0 else 1.0
    for threads, marker in ((1, "^"), (2, "v")):
        limits = [lim for lim in sample.limits if lim.threads == threads]
        if limits:
            memory = [lim.vcpu * MB_PER_VCPU for lim in limits]
            walls = [sample.wall(lim)[0] * scale for lim in limits]
            label = f"measured, {threads} thread{'s' if threads > 1 else ''} (average)"
            axis.plot(memory, walls, marker, color="black", linestyle="none", label=label)

__all__ = [
    "DEFAULT_CHART",
    "alternatives_table",
    "memory_table",
    "print_report",
    "sample_table",
    "usd",
    "verdict",
    "write_chart",
]
