"""`colearn plot`: redraw the score and vote-history plots from a results file."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from pydantic import ValidationError

from colearn.cli.common import console, fail as _fail, validation_message

def plot(
    results_file: Path = typer.Argument(..., help="a results.json written by `colearn run`"),
    out: Optional[Path] = typer.Option(None, "--out", help="directory for the plots (default: beside the file)"),
    fmt: List[str] = typer.Option(["png"], "--format", help="png and/or svg (repeatable)"),
) -> None:
    """Redraw the score and vote-history plots from a results file."""
    from colearn.results import ExperimentResults

    if not results_file.is_file():
        _fail(f"RESULTS_FILE: no such file {results_file}")
    bad = [f for f in fmt if f not in ("png", "svg")]
    if bad:
        _fail(f"--format: {bad[0]!r} is not png or svg")
    try:
        results = ExperimentResults.load(results_file)
    except ValidationError as exc:
        _fail(f"{results_file} is not a colearn results file: {validation_message(exc, dashes=False)}")
    except (ValueError, OSError) as exc:
        _fail(f"{results_file} is not a colearn results file: {exc}")
    from colearn.plot import save_plots  # after the file is validated: a bad file fails fast

    written = save_plots(results, out or results_file.parent, formats=tuple(fmt))
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def register(app: typer.Typer) -> None:
    """Add `colearn plot` to ``app``."""
    app.command()(plot)
