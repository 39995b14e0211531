"""The ``pixpipe`` command line (typer): one function per command, the work lives elsewhere.

Commands are registered here, in the order ``--help`` lists them; each lives in the module of
its concern: ``process`` (offline rendering), ``serve`` (the long-running roles), ``operate``
(commands against a running system), ``cost`` (pricing). ``common`` holds what they share.
Every command imports its heavy machinery inside its body, so ``pixpipe --help`` stays fast.
"""

from __future__ import annotations

import typer

from . import cost, operate, process, serve

app = typer.Typer(
    help="pixpipe: uploaded photos to web-ready variants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """pixpipe: uploaded photos to web-ready variants."""


def main() -> None:
    """Run the command line (the console script's entry point)."""
    app()


for _command in (
    process.process, serve.up, serve.worker, serve.api, operate.status, operate.failures,
    cost.cost, operate.sign, operate.invoke, operate.reprocess,
):  # fmt: skip
    app.command()(_command)

__all__ = ["app", "main"]
