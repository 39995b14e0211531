"""``pixpipe cost``: measure a recipe and price it on Lambda and containers (``pixpipe.cost``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..recipe import Recipe
from .common import ConfigOpt, fail, settings_or_fail


def cost(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="Sample photos or folders (default: a built-in synthetic sample)."),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("-v", "--variant", help="NAME=WxH[,fit][,gravity][,format][,qN]; repeat."),
    ] = None,
    images_per_day: Annotated[float, typer.Option(help="Originals per day.")] = 10_000,
    variants: Annotated[
        int | None, typer.Option(help="Variants per image (the recipe's first N).")
    ] = None,
    peak_concurrency: Annotated[
        int | None, typer.Option(help="Images in flight at the peak (sizes the containers).")
    ] = None,
    seconds_per_image: Annotated[
        float | None, typer.Option(help="Price a stated duration instead of measuring.")
    ] = None,
    memory_mb: Annotated[
        int | None, typer.Option(help="Lambda memory (MB) for --seconds-per-image.")
    ] = None,
    ephemeral_mb: Annotated[int, typer.Option(help="Lambda /tmp size (512 is free).")] = 512,
    container_vcpu: Annotated[float, typer.Option(help="vCPUs per always-on task.")] = 1.0,
    container_memory_gb: Annotated[float, typer.Option(help="GB per always-on task.")] = 2.0,
    container_arch: Annotated[str, typer.Option(help="x86 or arm64.")] = "x86",
    servers_monthly: Annotated[
        float | None, typer.Option(help="Your own servers' flat USD/month, to compare.")
    ] = None,
    free_tier: Annotated[bool, typer.Option(help="Subtract Lambda's monthly free tier.")] = False,
    prices: Annotated[Path | None, typer.Option(help="TOML/JSON file overriding prices.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many sample images.")] = 12,
    chart: Annotated[Path, typer.Option(help="Chart PNG to write.")] = Path("pixpipe-cost.png"),
    no_chart: Annotated[bool, typer.Option("--no-chart", help="Write no chart.")] = False,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Measure CPU seconds and peak memory per image (under 0.5, 1 and 2 vCPUs), and price a
    workload on AWS Lambda (each memory size, x86 and arm64) against always-on containers:
    table, chart, break-even, cost per 1000 images. The model: docs/cost.md."""
    from ..cost.command import cli_options, run

    settings = settings_or_fail(config)
    try:
        recipe = Recipe.parse(variant) if variant else settings.recipe
        options = cli_options(
            recipe, settings.limits.frozen(), prices, free_tier=free_tier,
            servers_monthly=servers_monthly, container_vcpu=container_vcpu,
            container_memory_gb=container_memory_gb, container_arch=container_arch,
            no_chart=no_chart, chart=chart, inputs=tuple(inputs or ()),
            images_per_day=images_per_day, variants=variants, peak_concurrency=peak_concurrency,
            seconds_per_image=seconds_per_image, memory_mb=memory_mb, ephemeral_mb=ephemeral_mb,
            limit=limit, as_json=as_json,
        )  # fmt: skip
        run(options)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


__all__ = ["cost"]
