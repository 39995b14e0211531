"""The pricing math: seconds per image at a Lambda memory size, monthly bills, break-even.

Pure functions over frozen dataclasses; nothing here measures or prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .prices import (
    DAYS_PER_MONTH,
    FREE_EPHEMERAL_MB,
    FREE_FARGATE_STORAGE_GB,
    HOURS_PER_MONTH,
    Prices,
    Tiers,
)

MB_PER_VCPU = 1769  # Lambda gives one full vCPU at 1769 MB, a proportional share below
LAMBDA_MEMORY_MB = (128, 256, 512, 1024, 1536, 1769, 2048, 3008, 4096, 5120, 6144, 8192, 10240)
MEMORY_HEADROOM = 1.1  # Lambda memory must hold the peak RSS with a margin for the runtime
ARCHES = ("x86", "arm64")


@dataclass(frozen=True, slots=True)
class Profile:
    """How one image (or the average image) runs: the figures the model needs."""

    cpu_s: float  # CPU seconds with one thread: the duration on one full vCPU
    parallel_s: float  # wall seconds with ``threads`` threads on as many cores
    threads: int = 1
    peak_rss_mb: float = 0.0

    @property
    def parallel_fraction(self) -> float:
        """Amdahl's p from two timings: t(T) = t(1)·((1 − p) + p/T)."""
        if self.threads <= 1 or self.cpu_s <= 0:
            return 0.0
        p = (1 - self.parallel_s / self.cpu_s) * self.threads / (self.threads - 1)
        return min(1.0, max(0.0, p))


def lambda_seconds(profile: Profile, memory_mb: float) -> float:
    """Duration at ``memory_mb``: a CPU share below 1769 MB, Amdahl above it.

    Past one vCPU only the parallel part speeds up, and only up to the thread count measured
    (this machine's cores): we do not extrapolate a speedup we have not seen.
    """
    share = memory_mb / MB_PER_VCPU
    if share <= 1:
        return profile.cpu_s / share
    p = profile.parallel_fraction
    return profile.cpu_s * ((1 - p) + p / min(share, profile.threads))


def tiered(units: float, tiers: Tiers) -> float:
    """Cost of ``units`` GB-seconds under tiered prices (each tier up to a monthly total)."""
    cost, below = 0.0, 0.0
    for upto, price in tiers:
        top = units if upto is None else min(units, upto)
        if top > below:
            cost += (top - below) * price
        below = max(below, top if upto is None else upto)
        if units <= below:
            break
    return cost


@dataclass(frozen=True, slots=True)
class LambdaBill:
    """One month of one function, USD."""

    requests: float
    compute: float
    ephemeral: float

    @property
    def total(self) -> float:
        return self.requests + self.compute + self.ephemeral


def lambda_monthly(
    images_per_day: float, seconds: float, memory_mb: float, prices: Prices,
    arch: str = "x86", ephemeral_mb: float = FREE_EPHEMERAL_MB,
) -> LambdaBill:  # fmt: skip
    """Requests + GB-seconds (tiered, less the free tier if on) + ephemeral storage."""
    requests = images_per_day * DAYS_PER_MONTH
    gb_s = requests * seconds * memory_mb / 1024
    extra_gb = max(0.0, ephemeral_mb - FREE_EPHEMERAL_MB) / 1024
    if prices.free_tier:
        billed_requests = max(0.0, requests - prices.free_requests)
        gb_s = max(0.0, gb_s - prices.free_gb_s)
    else:
        billed_requests = requests
    return LambdaBill(
        requests=billed_requests * prices.lambda_request,
        compute=tiered(gb_s, prices.lambda_gb_s(arch)),
        ephemeral=requests * seconds * extra_gb * prices.lambda_ephemeral_gb_s,
    )


@dataclass(frozen=True, slots=True)
class Container:
    """An always-on container (a Fargate task): size and architecture."""

    vcpu: float = 1.0
    memory_gb: float = 2.0
    storage_gb: float = FREE_FARGATE_STORAGE_GB
    arch: str = "x86"

    def hourly(self, prices: Prices) -> float:
        vcpu_hour, gb_hour = prices.fargate(self.arch)
        storage = max(0.0, self.storage_gb - FREE_FARGATE_STORAGE_GB)
        return (
            self.vcpu * vcpu_hour + self.memory_gb * gb_hour
            + storage * prices.fargate_storage_gb_hour
        )  # fmt: skip

    def monthly(self, prices: Prices, count: int = 1) -> float:
        return count * self.hourly(prices) * HOURS_PER_MONTH

    def slots(self, peak_rss_mb: float = 0.0) -> int:
        """Images one container renders at once: one per whole vCPU, as memory allows."""
        by_cpu = max(1, math.floor(self.vcpu))
        if peak_rss_mb <= 0:
            return by_cpu
        by_memory = math.floor(self.memory_gb * 1024 / (peak_rss_mb * MEMORY_HEADROOM))
        return max(1, min(by_cpu, by_memory))


@dataclass(frozen=True, slots=True)
class Workload:
    """What to price: volume, fan-out and the peak the always-on side must absorb."""

    images_per_day: float
    variants: int = 1  # per image: reported, and for the cost per 1000 variants
    peak_concurrency: int | None = None  # None: the average concurrency, rounded up
    ephemeral_mb: float = FREE_EPHEMERAL_MB
    container: Container = field(default_factory=Container)

    def average_concurrency(self, seconds: float) -> float:
        return self.images_per_day * seconds / 86_400

    def peak(self, seconds: float) -> int:
        """Images in flight at the busiest moment (never below the average)."""
        average = math.ceil(self.average_concurrency(seconds))
        return max(1, average, self.peak_concurrency or 0)


def containers_needed(workload: Workload, seconds: float, peak_rss_mb: float = 0.0) -> int:
    """Always-on containers that absorb the peak, each image on one vCPU for ``seconds``."""
    return math.ceil(workload.peak(seconds) / workload.container.slots(peak_rss_mb))


def per_1000(monthly: float, images_per_day: float) -> float:
    """USD per 1000 images at this month's volume."""
    images = images_per_day * DAYS_PER_MONTH
    return monthly / images * 1000 if images > 0 else 0.0


def break_even(fixed_monthly: float, lambda_at: Callable[[float], float]) -> float | None:
    """Images per day at which ``lambda_at(images_per_day)`` reaches ``fixed_monthly``.

    Found by bisection, so the free tier and tiered prices are honoured. None if Lambda stays
    cheaper up to a billion images a day.
    """
    low, high = 0.0, 1e9
    if lambda_at(high) < fixed_monthly:
        return None
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if lambda_at(mid) < fixed_monthly else (low, mid)
        if high - low < 1e-3:
            break
    return (low + high) / 2

__all__ = [
    "ARCHES",
    "LAMBDA_MEMORY_MB",
    "MB_PER_VCPU",
    "MEMORY_HEADROOM",
    "Container",
    "LambdaBill",
    "Profile",
    "Workload",
    "break_even",
    "containers_needed",
    "lambda_monthly",
    "lambda_seconds",
    "per_1000",
    "tiered",
]
