"""Commands that operate a running system: ``status``, ``failures``, ``sign``, ``invoke``,
``reprocess`` (each loads the settings, then talks to the bus or the stores)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..config import Settings
from ..recipe import RecipeError
from .common import ConfigOpt, DataDirOpt, err, fail, progress_bar, settings_or_fail


def _with_runtime(settings: Settings, action: Any) -> Any:
    import asyncio

    from ..pipeline.runtime import runtime

    async def run() -> Any:
        async with runtime(settings) as rt:
            return await action(rt)

    from ..bus import TopologyError

    try:
        return asyncio.run(run())
    except (ConnectionError, TopologyError) as exc:
        raise fail(str(exc)) from None


def status(
    key: Annotated[str | None, typer.Argument(help="An original's key (else: the bus).")] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """Print the state of one image as JSON (exit 1 if unknown); without a key, the bus: the
    node this process talks to and whether the stream has its replicas (exit 1 if not)."""
    from ..bus import bus_health

    async def action(rt: Any) -> Any:
        if key is None:
            return await bus_health(rt.nc, rt.js, rt.settings.bus.replicas)
        return await rt.states.get(key)

    found = _with_runtime(settings_or_fail(config, data_dir), action)
    if key is None:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        if not found["ok"]:
            raise typer.Exit(1)
        return
    if found is None:
        raise fail(f"no image {key!r}", 1)
    sys.stdout.write(found.model_dump_json(indent=2, exclude_none=True) + "\n")


def failures(
    retry: Annotated[str | None, typer.Option("--retry", help="Retry one failed key.")] = None,
    retry_all: Annotated[bool, typer.Option("--retry-all", help="Retry every failure.")] = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """List failed images with their kind and message, or put them back in line."""
    from ..pipeline.ingest import retry_failed

    async def action(rt: Any) -> Any:
        failed = await rt.states.failed()
        keys = [s.key for s in failed] if retry_all else [retry] if retry else []
        for one in keys:
            await retry_failed(rt, one)
        return failed, keys

    failed, retried = _with_runtime(settings_or_fail(config, data_dir), action)
    if retried:
        Console().print(f"retrying {len(retried)}: {', '.join(retried)}")
        return
    table = Table("key", "kind", "message", "attempts")
    for state in failed:
        kind, message = (state.error.kind, state.error.message) if state.error else ("", "")
        table.add_row(state.key, kind, message, str(state.attempts))
    Console().print(table if failed else "no failures")


def sign(
    options: Annotated[str, typer.Argument(help="e.g. w:800/h:600/fit:cover ('' for none).")],
    key: Annotated[str, typer.Argument(help="The original's key.")],
    base: Annotated[
        str, typer.Option("--base", help="Base URL to prefix (e.g. https://img.example).")
    ] = "",
    expires_in: Annotated[
        int | None, typer.Option("--expires-in", help="Seconds until the URL stops working.")
    ] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """Print a signed on-the-fly URL: /t/{signature}/{options}/{key}.

    Options: w, h (pixels), fit (inside|cover|contain|fill), g (gravity: centre, north, …,
    attention, entropy), f (jpeg|webp|avif|png|gif|original|auto), q (1-100), dpr (0.5-4),
    preset (a recipe variant), exp (a unix time: `--expires-in` adds it). The secret is
    api.signing_secret, or the one `pixpipe up` made.
    """
    from ..http.options import BadOptions, parse_options
    from ..http.signing import signing_secret, transform_path
    from ..storage import BadKey, validate_key

    settings = settings_or_fail(config, data_dir)
    if expires_in is not None:  # exp:… inside the signed path
        expiry = f"exp:{int(time.time()) + expires_in}"
        options = "/".join(p for p in (options.strip("/"), expiry) if p)
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


def invoke(
    key: Annotated[str, typer.Argument(help="The original's key.")],
    max_dimension: Annotated[
        int, typer.Option("--max-dimension", min=1, max=16383, help="Fit within N×N pixels.")
    ],
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """Resize one stored original now (no bus needed) and print {"resultKey": …} as JSON."""
    import asyncio

    from ..errors import PixpipeError
    from ..jobs.pool import RenderPool
    from ..jobs.resize import resize
    from ..storage import BadKey, open_stores, validate_key

    settings = settings_or_fail(config, data_dir)
    try:
        validate_key(key)
    except BadKey as exc:
        raise fail(str(exc)) from None

    async def run() -> dict[str, Any]:
        pool = RenderPool(1, settings.limits.frozen())
        try:
            stores = open_stores(settings)
            resized = await resize(stores, pool.render, pool.limits, key, max_dimension)
            return resized.to_dict()
        finally:
            await asyncio.to_thread(pool.close)

    try:
        result = asyncio.run(run())
    except PixpipeError as exc:
        raise fail(f"{key}: {exc}", 1) from None
    sys.stdout.write(json.dumps(result) + "\n")


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
    from ..pipeline.backfill import Report, check_prefix, coordinate
    from ..storage import BadKey

    settings = settings_or_fail(config, data_dir)
    try:
        names = _variant_names(settings, variant or ())
        check_prefix(prefix)
    except RecipeError as exc:
        raise fail(f"{exc} (the recipe has: {', '.join(settings.recipe.names)})") from None
    except BadKey as exc:
        raise fail(f"--prefix: {exc}") from None
    show_bar = not as_json and err.is_terminal
    with progress_bar(show_bar, rate=True) as bar:
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


__all__ = ["failures", "invoke", "reprocess", "sign", "status"]
