"""What every `colearn` sub-command shares: the consoles, one-line errors, KEY=VALUE parsing."""
from __future__ import annotations

import json
from typing import Any, Dict, List, NoReturn

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


class CliError(ValueError):
    """An error the user can fix: printed as one line, exit status 2."""


def one_line(message: object) -> str:
    """``message`` on one line (newlines and runs of spaces become single spaces), with secrets redacted."""
    from colearn.redact import redact

    return " ".join(redact(message).split())


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on one line on stderr (secrets redacted) and exit with ``code``, no traceback."""
    from rich.markup import escape

    errors.print(f"[red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


def parse_key_values(pairs: List[str], option: str = "--learner-param") -> Dict[str, Any]:
    """``["lr=0.1", "name=x"]`` -> ``{"lr": 0.1, "name": "x"}``: values are JSON where they parse, else strings."""
    params: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{option} expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params
