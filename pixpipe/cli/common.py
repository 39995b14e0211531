"""What every command shares: the error console, ``fail``, the settings loader, common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..config import Settings, load_settings
from ..recipe import RecipeError

err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="pixpipe.toml to read (default: ./pixpipe.toml).")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where embedded data lives.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error that says what to do next, and exit with ``code``."""
    err.print(f"[red]error:[/red] {escape(message)}")  # `[bus] replicas` is text, not markup
    return typer.Exit(code)


def settings_or_fail(config: Path | None, data_dir: Path | None = None) -> Settings:
    """The settings, or a one-line error (exit 2) naming what is wrong with them."""
    try:
        return load_settings(config, data_dir=data_dir)
    except (RecipeError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


def progress_bar(enabled: bool, *, rate: bool = False) -> Progress:
    """A progress bar with ETA on stderr (off when stderr is no terminal, or for ``--json``);
    ``rate``: a task field ``rate`` shown as images/s."""
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
    ]  # fmt: skip
    if rate:
        columns.append(TextColumn("{task.fields[rate]:.1f} images/s"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=err, disable=not enabled)


__all__ = ["ConfigOpt", "DataDirOpt", "err", "fail", "progress_bar", "settings_or_fail"]
