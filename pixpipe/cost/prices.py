"""The price table: data, dated, overridable from a TOML or JSON file (``--prices FILE``).

Defaults are AWS list prices for US East (N. Virginia), on-demand, Linux. They have not moved
between 2022 and the date below; check https://aws.amazon.com/lambda/pricing/ and
https://aws.amazon.com/fargate/pricing/ for your region and override what differs.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

HOURS_PER_MONTH = 730.0  # AWS's billing month: 8760 h / 12
DAYS_PER_MONTH = HOURS_PER_MONTH / 24  # 30.4166…
FREE_EPHEMERAL_MB = 512  # Lambda's /tmp up to 512 MB is included
FREE_FARGATE_STORAGE_GB = 20  # Fargate's ephemeral storage up to 20 GB is included

# (GB-seconds per month up to which the price holds, price per GB-second); None = no limit.
# x86: the first 6 billion GB-s, the next 9 billion, then the rest; arm64: 7.5, 11.25, the rest.
Tiers = tuple[tuple[float | None, float], ...]


@dataclass(frozen=True, slots=True)
class Prices:
    """Everything the model charges for, in USD. Override any field with ``--prices FILE``."""

    date: str = "2025-06-01"
    region: str = "us-east-1"
    lambda_x86_gb_s: Tiers = ((6e9, 0.0000166667), (15e9, 0.0000150000), (None, 0.0000133334))
    lambda_arm64_gb_s: Tiers = (
        (7.5e9, 0.0000133334), (18.75e9, 0.0000120001), (None, 0.0000106667)
    )  # fmt: skip
    lambda_request: float = 0.20 / 1e6
    lambda_ephemeral_gb_s: float = 0.0000000309  # per GB-second beyond the free 512 MB
    free_tier: bool = False  # the always-free monthly allowance, once per account
    free_requests: float = 1e6
    free_gb_s: float = 400_000.0
    fargate_x86_vcpu_hour: float = 0.04048
    fargate_x86_gb_hour: float = 0.004445
    fargate_arm64_vcpu_hour: float = 0.03238
    fargate_arm64_gb_hour: float = 0.00356
    fargate_storage_gb_hour: float = 0.000111  # beyond the free 20 GB
    servers_monthly: float | None = None  # "my servers": a flat monthly figure, if you have one

    def lambda_gb_s(self, arch: str) -> Tiers:
        return self.lambda_x86_gb_s if arch == "x86" else self.lambda_arm64_gb_s

    def fargate(self, arch: str) -> tuple[float, float]:
        """(vCPU-hour, GB-hour) for ``arch``."""
        if arch == "x86":
            return self.fargate_x86_vcpu_hour, self.fargate_x86_gb_hour
        return self.fargate_arm64_vcpu_hour, self.fargate_arm64_gb_hour

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_PRICES = Prices()


def load_prices(path: Path | None = None, base: Prices = DEFAULT_PRICES) -> Prices:
    """``base`` with the fields a ``.toml`` or ``.json`` file sets; unknown keys are errors.

    A tiered price may be one number (flat) or a list of ``[up_to_gb_s, price]`` pairs, the
    last of which holds without limit.
    """
    if path is None:
        return base
    if not path.is_file():
        raise FileNotFoundError(f"price file {path} not found")
    text = path.read_text("utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    return override(base, data, source=str(path))


def override(base: Prices, data: dict[str, Any], source: str = "prices") -> Prices:
    """``base`` with ``data``'s fields replaced, each checked against the field's type."""
    known = {f.name for f in fields(Prices)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{source}: unknown price {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return replace(base, **{k: _coerce(k, v, source) for k, v in data.items()})


def _coerce(name: str, value: Any, source: str) -> Any:
    if name in ("lambda_x86_gb_s", "lambda_arm64_gb_s"):
        return _tiers(name, value, source)
    if name in ("date", "region"):
        return str(value)
    if name == "free_tier":
        if not isinstance(value, bool):
            raise ValueError(f"{source}: free_tier must be true or false (got {value!r})")
        return value
    if name == "servers_monthly" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{source}: {name} must be a number ≥ 0 (got {value!r})")
    return float(value)


def _tiers(name: str, value: Any, source: str) -> Tiers:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ((None, float(value)),)
    try:
        pairs = [(float(up) if up is not None else None, float(price)) for up, price in value]
    except (TypeError, ValueError):
        pairs = []
    if not pairs:
        raise ValueError(
            f"{source}: {name} must be a price or a list of [up_to_gb_s, price] (got {value!r})"
        )
    # The last tier has no upper limit (TOML has no null, so its first number is ignored).
    return (*pairs[:-1], (None, pairs[-1][1]))

__all__ = [
    "DAYS_PER_MONTH",
    "DEFAULT_PRICES",
    "FREE_EPHEMERAL_MB",
    "FREE_FARGATE_STORAGE_GB",
    "HOURS_PER_MONTH",
    "Prices",
    "Tiers",
    "load_prices",
    "override",
]
