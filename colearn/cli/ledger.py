"""The ledger's part of the `colearn` command: `colearn audit`, and `run` options for `--backend ledger`.

``register(app)`` adds the ``audit`` command and gives ``run`` three options (``--rpc-url``, ``--keys-file``,
``--ledger-dir``) that reach the ledger backend; the other backends ignore them. Nothing here imports web3
until a ledger command actually runs.
"""
from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from colearn.ledger import CLI_OPTIONS

RPC_ENV = "COLEARN_LEDGER_RPC_URL"

from colearn.cli.common import add_options, console, errors, fail as _fail, wrap_run_command


def find_export(run_dir: Path) -> Path:
    """``ledger.json`` of a run: RUN_DIR itself, RUN_DIR/ledger/ledger.json or RUN_DIR/ledger.json."""
    for candidate in (run_dir, run_dir / "ledger" / "ledger.json", run_dir / "ledger.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"RUN_DIR: no ledger.json in {run_dir} (nor in {run_dir / 'ledger'})")


def audit(
    run_dir: Path = typer.Argument(..., help="the --out directory of `colearn run --backend ledger`, or a ledger.json"),
    results: Optional[Path] = typer.Option(None, "--results",
                                           help="results file to check against the chain (default: RUN_DIR/results.json)"),
    blobs: Optional[Path] = typer.Option(None, "--blobs", help="blob store directory (default: beside ledger.json)"),
    rpc_url: Optional[str] = typer.Option(None, "--rpc-url", envvar=RPC_ENV, show_envvar=True,
                                          help="JSON-RPC node of a run that used one (embedded runs are replayed)"),
    learners: Optional[str] = typer.Option(None, "--learners",
                                           help="the learners' addresses as known independently (comma-separated): "
                                                "the contract's must be exactly these"),
) -> None:
    """Check a ledger run: contract events, votes and tallies, accepted blobs, and the results file."""
    from pydantic import ValidationError

    from colearn.ledger.audit import audit as run_audit
    from colearn.ledger.chain import LedgerError
    from colearn.results import ExperimentResults

    try:
        export = find_export(run_dir)
        results_path = results if results is not None else (run_dir / "results.json" if run_dir.is_dir() else None)
        if results is not None and not results.is_file():
            raise FileNotFoundError(f"--results: no such file {results}")
        loaded = ExperimentResults.load(results_path) if results_path and results_path.is_file() else None
    except (OSError, ValidationError, ValueError) as exc:
        _fail(str(exc).splitlines()[0])
    try:
        expected = [a.strip() for a in learners.split(",") if a.strip()] if learners else None
        report = run_audit(export, blob_dir=blobs, results=loaded, rpc_url=rpc_url, expected_learners=expected)
    except (LedgerError, OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        _fail(f"cannot audit {export}: {exc}", code=1)
    for line in report.history:
        console.print(line, highlight=False)
    for line in report.scope:
        console.print(f"[yellow]note:[/] {line}", highlight=False, soft_wrap=True)
    closed = sum(1 for r in report.rounds if r.finalized is not None or r.skipped is not None)
    checked = f"{closed} closed rounds, {len(report.accepted)} accepted models" + (
        f", results file {results_path}" if loaded is not None else ", no results file")
    if report.ok:
        console.print(f"[green]audit passed[/]: {checked}", highlight=False)
        return
    for problem in report.problems:
        errors.print(f"[red]inconsistent:[/] {problem}", highlight=False, soft_wrap=True)
    errors.print(f"audit FAILED: {len(report.problems)} problem(s) in {checked}", highlight=False)
    raise typer.Exit(code=1)


def _ledger_params() -> list:
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("rpc_url", keyword, annotation=Optional[str], default=typer.Option(
            None, "--rpc-url", envvar=RPC_ENV, show_envvar=True,
            help="ledger backend: JSON-RPC node (default: embedded py-evm chain)")),
        inspect.Parameter("keys_file", keyword, annotation=Optional[Path], default=typer.Option(
            None, "--keys-file", help="ledger backend with --rpc-url: file of the learners' private keys, one a "
                                      "line (default: $COLEARN_LEDGER_KEYS)")),
        inspect.Parameter("ledger_dir", keyword, annotation=Optional[Path], default=typer.Option(
            None, "--ledger-dir", help="ledger backend: blob store and ledger.json (default: OUT/ledger)")),
    ]


def _with_ledger_options(run: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run)
    def wrapped(*args: Any, rpc_url: Optional[str] = None, keys_file: Optional[Path] = None,
                ledger_dir: Optional[Path] = None, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        options = {"rpc_url": rpc_url, "keys_file": str(keys_file) if keys_file else None,
                   "workdir": str(ledger_dir) if ledger_dir else (str(Path(out) / "ledger") if out else None)}
        token = CLI_OPTIONS.set({k: v for k, v in options.items() if v is not None})
        try:
            return run(*args, **kwargs)
        finally:
            CLI_OPTIONS.reset(token)

    return add_options(run, wrapped, _ledger_params(), "_ledger_options")


def register(app: typer.Typer) -> None:
    """Add `colearn audit`, `deploy`, `agent`, `watch` and the ledger options of `colearn run` to ``app``."""
    from colearn.cli.agents import register as register_agents

    if not any(info.name == "audit" for info in app.registered_commands):
        app.command("audit")(audit)
    register_agents(app)
    wrap_run_command(app, "_ledger_options", _with_ledger_options)
