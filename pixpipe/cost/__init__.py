"""The cost model: what one image costs to render, and what a workload costs where.

measure (CPU seconds and peak RSS per image, each in a fresh process) → model (Lambda's CPU
share by memory, Amdahl past one vCPU; monthly bills) → estimate (every memory size and
architecture, always-on containers, break-even) → report (table, JSON, chart).
"""

from __future__ import annotations

from .command import CostOptions, Outcome, compute, price, quick_sample, run
from .estimate import Choice, ContainerPlan, Estimate, MemoryRow, estimate, estimate_stated
from .measure import CpuLimit, ImageMeasure, Run, Sample, measure, synthetic_sample
from .model import (
    LAMBDA_MEMORY_MB,
    MB_PER_VCPU,
    Container,
    LambdaBill,
    Profile,
    Workload,
    break_even,
    lambda_monthly,
    lambda_seconds,
    tiered,
)
from .prices import DAYS_PER_MONTH, DEFAULT_PRICES, HOURS_PER_MONTH, Prices, load_prices
from .report import write_chart

__all__ = [
    "DAYS_PER_MONTH",
    "DEFAULT_PRICES",
    "HOURS_PER_MONTH",
    "LAMBDA_MEMORY_MB",
    "MB_PER_VCPU",
    "Choice",
    "Container",
    "ContainerPlan",
    "CostOptions",
    "CpuLimit",
    "Estimate",
    "ImageMeasure",
    "LambdaBill",
    "MemoryRow",
    "Outcome",
    "Prices",
    "Profile",
    "Run",
    "Sample",
    "Workload",
    "break_even",
    "compute",
    "estimate",
    "estimate_stated",
    "lambda_monthly",
    "lambda_seconds",
    "load_prices",
    "measure",
    "price",
    "quick_sample",
    "run",
    "synthetic_sample",
    "tiered",
    "write_chart",
]
