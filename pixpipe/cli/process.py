"""``pixpipe process``: render files and folders offline, no bus (the work is in ``offline``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..config import load_settings
from ..recipe import Recipe, RecipeError
from .common import ConfigOpt, err, fail, progress_bar


def process(
    inputs: Annotated[list[Path], typer.Argument(help="Files and folders (recursive).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    variant: Annotated[
        list[str] | None,
        typer.Option("-v", "--variant", help="NAME=WxH[,fit][,gravity][,format][,qN]; repeat."),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("-j", "--jobs", help="Worker processes (default: one per core).")
    ] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
) -> None:
    """Render every image under INPUTS into OUT/{variant}/{path}.{ext}, no bus needed.

    Exit status 0 when all succeeded, 1 when any failed (each listed with its kind).
    """
    from ..offline import find_jobs
    from ..offline import process as run

    try:
        settings = load_settings(config)
        recipe = Recipe.parse(variant) if variant else settings.recipe
    except (RecipeError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise fail(f"no such file or folder: {', '.join(missing)}")
    job_list = list(find_jobs(inputs))
    show_bar = not as_json and err.is_terminal
    with progress_bar(show_bar) as bar:
        task = bar.add_task("rendering", total=len(job_list))
        report = run(
            job_list, out, recipe, settings.limits.frozen(), jobs,
            on_result=lambda _: bar.advance(task),
        )  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _print_summary(report)
    raise typer.Exit(1 if report.failed else 0)


def _print_summary(report: object) -> None:
    from ..offline import Report

    assert isinstance(report, Report)
    out = Console()
    for result in report.results:
        if result.status == "failed":
            out.print(f"[red]failed[/red] {result.input}: [bold]{result.kind}[/bold]", end=" ")
            out.print(result.message, markup=False)
    table = Table(show_header=False, box=None)
    table.add_row("done", str(report.done))
    table.add_row("failed", str(report.failed))
    for kind, count in sorted(report.failed_by_kind.items()):
        table.add_row(f"  {kind}", str(count))
    table.add_row("time", f"{report.seconds:.2f} s")
    table.add_row("rate", f"{report.images_per_s:.1f} images/s")
    out.print(table)


__all__ = ["process"]
