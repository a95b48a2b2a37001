"""The `colearn` command: run experiments, redraw plots, list learners and tasks, serve learners, audit ledgers.

One module per group of commands; each adds its commands to :data:`app` with ``register(app)``:
:mod:`~colearn.cli.run` (run), :mod:`~colearn.cli.plot`, :mod:`~colearn.cli.info` (learners, tasks, version),
:mod:`~colearn.cli.serve` (serve, make-cert), :mod:`~colearn.cli.ledger` (audit, deploy, agent, watch; and
:mod:`~colearn.cli.agents`), :mod:`~colearn.cli.dashboard`; :mod:`~colearn.cli.common` is what they share.
"""
from __future__ import annotations

import sys

import typer
from rich.markup import escape

from colearn.cli import dashboard as _dashboard, info as _info, ledger as _ledger, plot as _plot
from colearn.cli import run as _run, serve as _serve
from colearn.cli.common import console, error_message, errors, quiet_frameworks

__all__ = ["app", "main"]

app = typer.Typer(help="colearn: decentralized collective learning. Learners train one shared model without "
                       "pooling their data; each round one proposes, the others vote.",
                  add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)

# the order of `colearn --help`; ledger and dashboard also add their options to `run`, so they come after it
for _commands in (_run, _plot, _info, _serve, _ledger, _dashboard):
    _commands.register(app)


def _print_version(value: bool) -> None:
    if value:
        from colearn import __version__

        console.print(f"colearn {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="print colearn's version and exit")) -> None:
    """colearn: decentralized collective learning."""


def main() -> None:
    """Entry point of the `colearn` script: frameworks kept quiet, a missing extra as one line."""
    quiet_frameworks()
    try:
        app()
    except ImportError as exc:  # any command, e.g. `colearn audit` without the ledger extra
        errors.print(f"[red]error:[/] {escape(error_message(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)

