"""The ``pixpipe`` command line (typer): one function per command, the work lives elsewhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .config import Settings, load_settings
from .recipe import Recipe, RecipeError

if TYPE_CHECKING:
    from .pipeline.roles import Roles

app = typer.Typer(
    help="pixpipe: uploaded photos to web-ready variants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


@app.callback()
def main() -> None:
    """pixpipe: uploaded photos to web-ready variants."""

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="pixpipe.toml to read (default: ./pixpipe.toml).")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error that says what to do next, and exit with ``code``."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
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
    from .offline import find_jobs
    from .offline import process as run

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
    with _progress(show_bar) as bar:
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


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=err, disable=not enabled, transient=False,
    )  # fmt: skip


def _print_summary(report: object) -> None:
    from .offline import Report

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


DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where embedded data lives.")]


def _settings(config: Path | None, data_dir: Path | None = None) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir)
    except (RecipeError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


def _serve(settings: Settings, roles: Roles) -> None:
    import asyncio

    from .logs import configure_logging
    from .pipeline.roles import serve

    configure_logging()

    def ready(rt: object, url: str) -> None:
        if not roles.api:
            err.print(f"[green]worker ready[/green] ({roles.workers or 'one per core'} renderers)")
            return
        from .http.app import api_keys

        key = api_keys(settings, create=True)[0]
        err.print(f"[green]pixpipe is up[/green] at [bold]{url}[/bold]  (dashboard: {url}/)")
        err.print(f"API key: [bold]{key}[/bold]")
        err.print(
            f'try: curl -H "Authorization: Bearer {key}" --data-binary @photo.jpg '
            f'"{url}/v1/images?key=photo.jpg"'
        )

    asyncio.run(serve(settings, roles, on_ready=ready))


HostOpt = Annotated[str, typer.Option("--host", help="Interface for the HTTP service.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port for the HTTP service.")]
WorkersOpt = Annotated[
    int, typer.Option("--workers", help="Render processes (default: one per core).")
]


@app.command()
def up(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000, workers: WorkersOpt = 0,
) -> None:  # fmt: skip
    """The whole system on one machine: bus, workers, backup, notifications, HTTP API."""
    from .pipeline.roles import Roles

    _serve(_settings(config, data_dir), Roles(True, True, workers, host, port))


@app.command()
def worker(config: ConfigOpt = None, data_dir: DataDirOpt = None, workers: WorkersOpt = 0) -> None:
    """The worker role alone (variants, backup, notify), against a shared bus and stores."""
    from .pipeline.roles import Roles

    _serve(_settings(config, data_dir), Roles(True, False, workers))


@app.command()
def api(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
) -> None:  # fmt: skip
    """The HTTP role alone (uploads, state, delivery, ingest), against a shared bus."""
    from .pipeline.roles import Roles

    _serve(_settings(config, data_dir), Roles(False, True, 0, host, port))


def _with_runtime(settings: Settings, action: Any) -> Any:
    import asyncio

    from .pipeline.runtime import runtime

    async def run() -> Any:
        async with runtime(settings) as rt:
            return await action(rt)

    try:
        return asyncio.run(run())
    except ConnectionError as exc:
        raise fail(str(exc)) from None


@app.command()
def status(
    key: Annotated[str, typer.Argument(help="The original's key.")],
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """Print the state of one image as JSON (exit 1 if unknown)."""

    async def action(rt: Any) -> Any:
        return await rt.states.get(key)

    state = _with_runtime(_settings(config, data_dir), action)
    if state is None:
        raise fail(f"no image {key!r}", 1)
    sys.stdout.write(state.model_dump_json(indent=2, exclude_none=True) + "\n")


@app.command()
def failures(
    retry: Annotated[str | None, typer.Option("--retry", help="Retry one failed key.")] = None,
    retry_all: Annotated[bool, typer.Option("--retry-all", help="Retry every failure.")] = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """List failed images with their kind and message, or put them back in line."""
    from .pipeline.ingest import retry_failed

    async def action(rt: Any) -> Any:
        failed = await rt.states.failed()
        keys = [s.key for s in failed] if retry_all else [retry] if retry else []
        for one in keys:
            await retry_failed(rt, one)
        return failed, keys

    failed, retried = _with_runtime(_settings(config, data_dir), action)
    if retried:
        Console().print(f"retrying {len(retried)}: {', '.join(retried)}")
        return
    table = Table("key", "kind", "message", "attempts")
    for state in failed:
        kind, message = (state.error.kind, state.error.message) if state.error else ("", "")
        table.add_row(state.key, kind, message, str(state.attempts))
    Console().print(table if failed else "no failures")


@app.command()
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
    from .cost.command import cli_options, run

    settings = _settings(config)
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


@app.command()
def sign(
    options: Annotated[str, typer.Argument(help="e.g. w:800/h:600/fit:cover ('' for none).")],
    key: Annotated[str, typer.Argument(help="The original's key.")],
    base: Annotated[
        str, typer.Option("--base", help="Base URL to prefix (e.g. https://img.example).")
    ] = "",
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """Print a signed on-the-fly URL: /t/{signature}/{options}/{key}.

    Options: w, h (pixels), fit (inside|cover|contain|fill), g (gravity: centre, north, …,
    attention, entropy), f (jpeg|webp|avif|png|gif|original|auto), q (1-100), dpr (0.5-4),
    preset (a recipe variant). The secret is api.signing_secret, or the one `pixpipe up` made.
    """
    from .http.options import BadOptions, parse_options
    from .http.signing import signing_secret, transform_path
    from .storage import BadKey, validate_key

    settings = _settings(config, data_dir)
    try:
        parse_options(options)
        validate_key(key)
    except (BadOptions, BadKey) as exc:
        raise fail(str(exc)) from None
    secret = signing_secret(settings)
    if not secret:
        raise fail("no signing secret: set api.signing_secret (PIXPIPE_API__SIGNING_SECRET) "
                   "or run `pixpipe up` once to make one in the data dir")  # fmt: skip
    sys.stdout.write(base.rstrip("/") + transform_path(secret, options, key) + "\n")


@app.command()
def invoke(
    key: Annotated[str, typer.Argument(help="The original's key.")],
    max_dimension: Annotated[
        int, typer.Option("--max-dimension", min=1, max=16383, help="Fit within N×N pixels.")
    ],
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """Resize one stored original now (no bus needed) and print {"resultKey": …} as JSON."""
    import asyncio

    from .errors import PixpipeError
    from .jobs.pool import RenderPool
    from .jobs.resize import resize
    from .storage import BadKey, open_stores, validate_key

    settings = _settings(config, data_dir)
    try:
        validate_key(key)
    except BadKey as exc:
        raise fail(str(exc)) from None

    async def run() -> dict[str, Any]:
        pool = RenderPool(1, settings.limits.frozen())
        try:
            return (await resize(open_stores(settings), pool.render, key, max_dimension)).to_dict()
        finally:
            await asyncio.to_thread(pool.close)

    try:
        result = asyncio.run(run())
    except PixpipeError as exc:
        raise fail(f"{key}: {exc}", 1) from None
    sys.stdout.write(json.dumps(result) + "\n")


@app.command()
def reprocess(
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", help="A recipe variant to (re)make; repeat (default: all)."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Only originals whose key starts with this.")] = "",
    missing_only: Annotated[
        bool, typer.Option("--missing-only", help="Skip originals whose variant file exists.")
    ] = False,
    page_size: Annotated[
        int, typer.Option(min=1, help="Originals listed (and held in memory) at a time.")
    ] = 1000,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
) -> None:  # fmt: skip
    """Backfill through the bus: give every stored original (under --prefix) the named
    variants, leaving its other variant files alone. Workers (`pixpipe up` / `pixpipe
    worker`) do the rendering. Safe to interrupt: the same command again resumes."""
    from .pipeline.backfill import Report, check_prefix, coordinate
    from .storage import BadKey

    settings = _settings(config, data_dir)
    try:
        names = _variant_names(settings, variant or ())
        check_prefix(prefix)
    except RecipeError as exc:
        raise fail(f"{exc} (the recipe has: {', '.join(settings.recipe.names)})") from None
    except BadKey as exc:
        raise fail(f"--prefix: {exc}") from None
    show_bar = not as_json and err.is_terminal
    with Progress(
        TextColumn("[bold]reprocess"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} images/s"), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=err, disable=not show_bar,
    ) as bar:  # fmt: skip
        task = bar.add_task("reprocess", total=None, rate=0.0)

        def progress(report: Report) -> None:
            # The total grows while the listing goes on; the ETA is right once it is complete.
            bar.update(
                task, total=report.listed, completed=report.finished, rate=report.images_per_s
            )

        async def action(rt: Any) -> Report:
            return await coordinate(
                rt, names, prefix, missing_only, page_size=page_size, on_progress=progress
            )

        try:
            report = _with_runtime(settings, action)
        except KeyboardInterrupt:
            raise fail("interrupted: run the same command again to resume", 130) from None
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        out = Console()
        for failure in report.failures:
            key, kind = failure["key"], failure["kind"]
            out.print(f"[red]failed[/red] {key}: [bold]{kind}[/bold]", end=" ")
            out.print(failure["message"], markup=False)
        table = Table(show_header=False, box=None)
        for label, value in (
            ("variants", ", ".join(report.variants)), ("originals", str(report.listed)),
            ("rendered", str(report.done)), ("up to date", str(report.skipped)),
            ("failed", str(report.failed)), ("time", f"{report.seconds:.1f} s"),
            ("rate", f"{report.images_per_s:.1f} images/s"),
        ):  # fmt: skip
            table.add_row(label, value)
        out.print(table)
    raise typer.Exit(1 if report.failed else 0)


def _variant_names(settings: Settings, names: Sequence[str]) -> tuple[str, ...]:
    """The variant names a backfill makes: those asked for, checked against the recipe."""
    return settings.recipe.only(names).names if names else settings.recipe.names
