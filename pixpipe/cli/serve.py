"""The long-running roles: ``pixpipe up`` (everything), ``worker`` and ``api`` (one role each)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import Settings
from .common import ConfigOpt, DataDirOpt, err, fail, settings_or_fail

if TYPE_CHECKING:
    from ..pipeline.roles import Roles

HostOpt = Annotated[str, typer.Option("--host", help="Interface for the HTTP service.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port for the HTTP service.")]
WorkersOpt = Annotated[
    int, typer.Option("--workers", help="Render processes (default: one per core).")
]


def up(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000, workers: WorkersOpt = 0,
) -> None:  # fmt: skip
    """The whole system on one machine: bus, workers, backup, notifications, HTTP API."""
    from ..pipeline.roles import Roles

    _serve(settings_or_fail(config, data_dir), Roles(True, True, workers, host, port))


def worker(config: ConfigOpt = None, data_dir: DataDirOpt = None, workers: WorkersOpt = 0) -> None:
    """The worker role alone (variants, backup, notify), against a shared bus and stores."""
    from ..pipeline.roles import Roles

    _serve(settings_or_fail(config, data_dir), Roles(True, False, workers))


def api(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
) -> None:  # fmt: skip
    """The HTTP role alone (uploads, state, delivery, ingest), against a shared bus."""
    from ..pipeline.roles import Roles

    _serve(settings_or_fail(config, data_dir), Roles(False, True, 0, host, port))


def _serve(settings: Settings, roles: Roles) -> None:
    import asyncio

    from ..logs import configure_logging
    from ..pipeline.roles import serve

    configure_logging()

    from ..http.signing import KEY_FILE, key_to_show

    shown = key_to_show(settings) if roles.api else None  # before the API makes it

    def ready(rt: object, url: str) -> None:
        if not roles.api:
            err.print(f"[green]worker ready[/green] ({roles.workers or 'one per core'} renderers)")
            return
        err.print(f"[green]pixpipe is up[/green] at [bold]{url}[/bold]  (dashboard: {url}/)")
        kept = Path(settings.data_dir) / KEY_FILE
        if shown is not None:
            err.print(f"API key: [bold]{shown}[/bold]  (made now; kept in {kept}, not shown again)")
        elif kept.exists():
            err.print(f"API key: in {kept}")
        key = shown or (f"$(cat {kept})" if kept.exists() else "YOUR-API-KEY")
        err.print(
            f'try: curl -H "Authorization: Bearer {key}" --data-binary @photo.jpg '
            f'"{url}/v1/images?key=photo.jpg"'
        )

    from ..bus import TopologyError
    from ..tracing import configured

    role = "api" if not roles.worker else "worker" if not roles.api else ""
    try:
        with configured(f"pixpipe-{role}" if role else "pixpipe"):  # OTEL_*; off when unset
            asyncio.run(serve(settings, roles, on_ready=ready))
    except (ConnectionError, TopologyError) as exc:  # the bus refused us: say why, no trace
        raise fail(str(exc)) from None


__all__ = ["api", "up", "worker"]
