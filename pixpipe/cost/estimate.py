"""A workload priced every way: Lambda at each memory size and architecture, always-on
containers sized for the peak, a flat "my servers" figure, and where the lines cross."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from .model import (
    ARCHES,
    LAMBDA_MEMORY_MB,
    MB_PER_VCPU,
    MEMORY_HEADROOM,
    Container,
    Profile,
    Workload,
    break_even,
    containers_needed,
    lambda_monthly,
    lambda_seconds,
    per_1000,
)
from .prices import Prices

TIE = 1.005  # bills within half a percent of the cheapest count as the same


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """Lambda at one memory size: seconds per image and USD per month, by architecture."""

    memory_mb: int
    vcpu: float
    avg_s: float
    worst_s: float
    fits: bool  # the worst image's peak RSS (plus headroom) fits in this memory
    x86: float  # monthly, every image like the average one
    arm64: float
    worst_x86: float  # monthly, every image like the worst one
    worst_arm64: float

    def monthly(self, arch: str) -> float:
        return self.x86 if arch == "x86" else self.arm64


@dataclass(frozen=True, slots=True)
class Choice:
    """The cheapest Lambda configuration that fits."""

    arch: str
    memory_mb: int
    seconds: float
    monthly: float
    per_1000: float


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    """Enough always-on containers for the peak."""

    container: Container
    count: int
    slots: int  # images each renders at once
    peak_concurrency: int
    monthly: float
    per_1000: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """Everything ``pixpipe cost`` prints, as plain figures."""

    source: str  # "measured" or "stated"
    workload: Workload
    prices: Prices
    rows: tuple[MemoryRow, ...]
    lambda_best: Choice | None
    containers: ContainerPlan
    break_even_images_per_day: float | None  # Lambda (best) = the containers
    servers_break_even_images_per_day: float | None

    @property
    def cheapest(self) -> str:
        options = {"containers": self.containers.monthly}
        if self.lambda_best:
            options["lambda"] = self.lambda_best.monthly
        if self.prices.servers_monthly is not None:
            options["servers"] = self.prices.servers_monthly
        return min(options, key=lambda k: options[k])

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["prices"] = self.prices.to_dict()
        data["cheapest"] = self.cheapest
        data["requests_per_month"] = self.workload.images_per_day * 730 / 24
        return data


def estimate(
    average: Profile, worst: Profile, workload: Workload, prices: Prices,
    sizes: tuple[int, ...] = LAMBDA_MEMORY_MB, source: str = "measured",
) -> Estimate:  # fmt: skip
    """Price ``workload`` with images that run like ``average`` (and, at worst, ``worst``)."""
    rows = tuple(_row(average, worst, workload, prices, mb) for mb in sizes)
    best = _best(rows, workload, prices)
    plan = _containers(average, worst, workload, prices)

    def lambda_at(volume: float) -> float:
        assert best is not None
        seconds = lambda_seconds(average, best.memory_mb)
        bill = lambda_monthly(
            volume, seconds, best.memory_mb, prices, best.arch, workload.ephemeral_mb
        )
        return bill.total

    even = _fleet_break_even(plan, average, worst, workload, prices, lambda_at) if best else None
    servers = prices.servers_monthly
    even_servers = break_even(servers, lambda_at) if best and servers is not None else None
    return Estimate(source, workload, prices, rows, best, plan, even, even_servers)


def _fleet_break_even(
    plan: ContainerPlan, average: Profile, worst: Profile, workload: Workload, prices: Prices,
    lambda_at: Callable[[float], float],
) -> float | None:  # fmt: skip
    """Images per day from which always-on tasks cost less than Lambda, the fleet grown as
    the volume needs (never below today's): where Lambda's bill meets a fleet that keeps up."""
    count = plan.count
    for _ in range(100):
        volume = break_even(plan.container.monthly(prices, count), lambda_at)
        if volume is None:
            return None
        needed = containers_needed(replace(workload, images_per_day=volume), average.cpu_s,
                                   worst.peak_rss_mb)  # fmt: skip
        if needed <= count:
            return volume
        count = needed
    return None  # the fleet never catches up: Lambda stays cheaper


def estimate_stated(seconds: float, memory_mb: int, workload: Workload, prices: Prices) -> Estimate:
    """Price a workload stated as ``seconds`` per image at ``memory_mb``, without measuring.

    The duration holds at ``memory_mb``; a container's vCPU runs an image in the same time,
    or faster when ``memory_mb`` is below one vCPU's worth (1769 MB).
    """
    cpu_s = seconds * min(1.0, memory_mb / MB_PER_VCPU)
    profile = Profile(cpu_s, cpu_s, 1, 0.0)
    return estimate(profile, profile, workload, prices, (memory_mb,), source="stated")


def _row(
    average: Profile, worst: Profile, workload: Workload, prices: Prices, memory_mb: int
) -> MemoryRow:
    avg_s, worst_s = lambda_seconds(average, memory_mb), lambda_seconds(worst, memory_mb)

    def bill(seconds: float, arch: str) -> float:
        ephemeral = workload.ephemeral_mb
        return lambda_monthly(
            workload.images_per_day, seconds, memory_mb, prices, arch, ephemeral
        ).total

    return MemoryRow(
        memory_mb, memory_mb / MB_PER_VCPU, avg_s, worst_s,
        fits=worst.peak_rss_mb * MEMORY_HEADROOM <= memory_mb,
        x86=bill(avg_s, "x86"), arm64=bill(avg_s, "arm64"),
        worst_x86=bill(worst_s, "x86"), worst_arm64=bill(worst_s, "arm64"),
    )  # fmt: skip


def _best(rows: tuple[MemoryRow, ...], workload: Workload, prices: Prices) -> Choice | None:
    """The cheapest size that fits; within half a percent of it, the fastest.

    Below one vCPU a bigger function runs proportionally faster for the same bill, so many
    sizes cost the same: of those, pick the quickest.
    """
    candidates = [(row.monthly(arch), row.avg_s, row.memory_mb, arch, row) for row in rows
                  if row.fits for arch in ARCHES]  # fmt: skip
    if not candidates:
        return None
    cheapest = min(c[0] for c in candidates)
    near = [c for c in candidates if c[0] <= cheapest * TIE + 1e-9]
    monthly, seconds, memory_mb, arch, _ = min(near, key=lambda c: (c[1], c[2], c[0]))
    return Choice(arch, memory_mb, seconds, monthly, per_1000(monthly, workload.images_per_day))


def _containers(
    average: Profile, worst: Profile, workload: Workload, prices: Prices
) -> ContainerPlan:
    """Each image takes one vCPU for its single-thread CPU time; size for the peak."""
    container = workload.container
    count = containers_needed(workload, average.cpu_s, worst.peak_rss_mb)
    monthly = container.monthly(prices, count)
    return ContainerPlan(
        container, count, container.slots(worst.peak_rss_mb), workload.peak(average.cpu_s),
        monthly, per_1000(monthly, workload.images_per_day),
    )  # fmt: skip

__all__ = [
    "TIE",
    "Choice",
    "ContainerPlan",
    "Estimate",
    "MemoryRow",
    "estimate",
    "estimate_stated",
]
