"""``pixpipe cost``: options gathered once, then measure (or take the stated figures), price,
print and chart."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from ..config import Limits
from ..recipe import Recipe
from .estimate import Estimate, estimate, estimate_stated
from .measure import (
    DEFAULT_LIMIT,
    Progress,
    Sample,
    default_limits,
    find_images,
    measure,
    synthetic_sample,
)
from .model import LAMBDA_MEMORY_MB, Container, Workload
from .prices import FREE_EPHEMERAL_MB, Prices
from .report import DEFAULT_CHART, print_report, write_chart

QUICK_SIZES = ((2000, 1500),)  # the dashboard's quick measurement


@dataclass(frozen=True, slots=True)
class CostOptions:
    """What the command line asked for, validated."""

    recipe: Recipe
    limits: Limits = field(default_factory=Limits)
    prices: Prices = field(default_factory=Prices)
    inputs: tuple[Path, ...] = ()
    images_per_day: float = 10_000
    variants: int | None = None
    peak_concurrency: int | None = None
    seconds_per_image: float | None = None
    memory_mb: int | None = None
    ephemeral_mb: int = FREE_EPHEMERAL_MB
    container: Container = field(default_factory=Container)
    limit: int = DEFAULT_LIMIT
    chart: Path | None = DEFAULT_CHART
    as_json: bool = False

    def __post_init__(self) -> None:
        _check(self.images_per_day >= 0, "--images-per-day", "≥ 0", self.images_per_day)
        stated = (self.seconds_per_image, self.memory_mb)
        _check(all(v is None for v in stated) or None not in stated,
               "--seconds-per-image", "given together with --memory-mb", stated)  # fmt: skip
        if self.memory_mb is not None:
            _check(128 <= self.memory_mb <= 10240, "--memory-mb", "128..10240", self.memory_mb)
        if self.seconds_per_image is not None:
            _check(self.seconds_per_image > 0, "--seconds-per-image", "> 0",
                   self.seconds_per_image)  # fmt: skip
        _check(512 <= self.ephemeral_mb <= 10240, "--ephemeral-mb", "512..10240",
               self.ephemeral_mb)  # fmt: skip
        if self.variants is not None:
            _check(self.variants >= 1, "--variants", "≥ 1", self.variants)
        if self.peak_concurrency is not None:
            _check(self.peak_concurrency >= 1, "--peak-concurrency", "≥ 1",
                   self.peak_concurrency)  # fmt: skip
        _check(self.container.vcpu > 0 and self.container.memory_gb > 0,
               "--container-vcpu/--container-memory-gb", "> 0",
               (self.container.vcpu, self.container.memory_gb))  # fmt: skip
        _check(self.container.arch in ("x86", "arm64"), "--container-arch", "x86 or arm64",
               self.container.arch)  # fmt: skip

    @property
    def stated(self) -> bool:
        return self.seconds_per_image is not None


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected} (got {got!r})")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The estimate, the sample it came from (if measured) and the chart written (if any)."""

    estimate: Estimate
    sample: Sample | None
    chart: Path | None

    def to_dict(self) -> dict[str, object]:
        return {
            **self.estimate.to_dict(),
            "sample": self.sample.to_dict() if self.sample else None,
            "chart": str(self.chart) if self.chart else None,
        }


def compute(options: CostOptions, progress: Progress | None = None) -> Outcome:
    """Measure (unless stated), price, and write the chart. ``progress`` hears of each run."""
    sample = None if options.stated else _measure(options, _recipe(options), progress)
    return price(options, sample)


def price(options: CostOptions, sample: Sample | None) -> Outcome:
    """Price the workload: the stated figures, or else the measured ``sample``; chart it."""
    recipe = _recipe(options)
    workload = Workload(
        options.images_per_day, options.variants or len(recipe), options.peak_concurrency,
        options.ephemeral_mb, options.container,
    )  # fmt: skip
    if options.stated:
        assert options.seconds_per_image is not None and options.memory_mb is not None
        result = estimate_stated(
            options.seconds_per_image, options.memory_mb, workload, options.prices
        )
        sample = None
    elif sample is None:
        raise ValueError("nothing measured: give a sample, or --seconds-per-image and --memory-mb")
    else:
        result = estimate(sample.average, sample.worst, workload, options.prices,
                          LAMBDA_MEMORY_MB)  # fmt: skip
    chart = write_chart(result, options.chart, sample) if options.chart else None
    return Outcome(result, sample, chart)


def quick_sample(recipe: Recipe, limits: Limits) -> Sample:
    """One synthetic 3 MP photo at one vCPU (and two, with two threads): a few seconds."""
    with tempfile.TemporaryDirectory(prefix="pixpipe-cost-") as folder:
        paths = synthetic_sample(Path(folder), QUICK_SIZES)
        cpu_limits = [lim for lim in default_limits() if lim.threads == lim.vcpu]
        return measure(paths, recipe, limits, cpu_limits, synthetic=True)


def run(options: CostOptions, console: Console | None = None) -> Outcome:
    """``compute`` with a progress bar on stderr, then print the report (or the JSON)."""
    with progress_bar() as progress:
        outcome = compute(options, progress)
    if options.as_json:
        sys.stdout.write(json.dumps(outcome.to_dict(), indent=2) + "\n")
    else:
        print_report(outcome.estimate, outcome.sample, console or Console(), outcome.chart)
    return outcome


def _recipe(options: CostOptions) -> Recipe:
    """The recipe, cut to its first ``--variants`` variants when asked for fewer."""
    recipe, wanted = options.recipe, options.variants
    if wanted is None or wanted == len(recipe) or options.stated:
        return recipe
    if wanted > len(recipe):
        raise ValueError(
            f"--variants {wanted}: the recipe has only {len(recipe)} "
            f"({', '.join(recipe.names)}); give more with -v NAME=WxH"
        )
    return recipe.only(recipe.names[:wanted])


@contextlib.contextmanager
def progress_bar() -> Iterator[Progress]:
    """A rich progress bar with an ETA on stderr (stdout stays clean for ``--json``)."""
    columns = (
        TextColumn("measuring {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    with RichProgress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("", total=None)

        def advance(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name)

        yield advance


def _measure(options: CostOptions, recipe: Recipe, progress: Progress | None) -> Sample:
    if options.inputs:
        missing = [str(p) for p in options.inputs if not p.exists()]
        if missing:
            raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
        paths = find_images(options.inputs, options.limit)
        if not paths:
            raise ValueError("no images found in the sample given")
        return measure(paths, recipe, options.limits, progress=progress)
    paths = synthetic_sample(sample_cache())
    return measure(paths, recipe, options.limits, synthetic=True, progress=progress)


def sample_cache() -> Path:
    """Where the built-in synthetic sample is kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pixpipe" / "cost-sample"


def cli_options(
    recipe: Recipe, limits: Limits, prices_file: Path | None, *, free_tier: bool,
    servers_monthly: float | None, container_vcpu: float, container_memory_gb: float,
    container_arch: str, no_chart: bool, chart: Path, **rest: Any,
) -> CostOptions:  # fmt: skip
    """The command line's flat options → ``CostOptions`` (prices file first, then flags)."""
    from .prices import load_prices, override

    prices = load_prices(prices_file)
    changes: dict[str, Any] = {"free_tier": True} if free_tier else {}
    if servers_monthly is not None:
        changes["servers_monthly"] = servers_monthly
    container = Container(container_vcpu, container_memory_gb, arch=container_arch)
    return CostOptions(
        recipe, limits, override(prices, changes, "command line"), container=container,
        chart=None if no_chart else chart, **rest,
    )  # fmt: skip

__all__ = [
    "QUICK_SIZES",
    "CostOptions",
    "Outcome",
    "cli_options",
    "compute",
    "price",
    "progress_bar",
    "quick_sample",
    "run",
    "sample_cache",
]
