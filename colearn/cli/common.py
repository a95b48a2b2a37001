"""What every `colearn` sub-command shares: the consoles, one-line errors, KEY=VALUE parsing, quiet frameworks."""
from __future__ import annotations

import inspect
import json
import logging
import os
from typing import Any, Callable, Dict, List, NoReturn, Sequence

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

console = Console()
errors = Console(stderr=True)


def _hide_flag_types() -> None:
    """typer prints a ``<bool>`` type beside every flag (``--help`` included), though flags take no value."""
    from typer import core

    option = getattr(core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "hides_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> Any:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich.hides_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich  # type: ignore[union-attr]


_hide_flag_types()


class CliError(ValueError):
    """An error the user can fix: printed as one line, exit status 2."""


def one_line(message: object) -> str:
    """``message`` on one line (newlines and runs of spaces become single spaces), with secrets redacted."""
    from colearn.redact import redact

    return " ".join(redact(message).split())


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on one line on stderr (secrets redacted) and exit with ``code``, no traceback."""
    errors.print(f"[red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


def validation_message(exc: ValidationError, dashes: bool = True) -> str:
    """A pydantic error as one line: up to three problems, each naming its key (as an option when ``dashes``)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where.replace('_', '-') if dashes else where}: {message}" if where else message)
    return "; ".join(parts[:3]) + (f" (and {len(parts) - 3} more)" if len(parts) > 3 else "")


# the top-level module a missing import names -> the extra that installs it
EXTRA_OF_MODULE = {"torch": "pytorch", "opacus": "pytorch", "tensorflow": "keras", "keras": "keras",
                   "dp_accounting": "keras", "ray": "ray", "web3": "ledger", "eth_account": "ledger",
                   "eth_tester": "ledger", "eth_abi": "ledger", "eth_utils": "ledger", "vyper": "ledger",
                   "grpc": "grpc", "google": "grpc", "cryptography": "grpc", "xxhash": "grpc", "onnx": "onnx",
                   "onnxscript": "onnx", "starlette": "dashboard", "uvicorn": "dashboard"}


def error_message(exc: BaseException) -> str:
    """One line for an error; a missing module becomes the install command of the extra that provides it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, ImportError) or "pip install" in text:
        return text
    module = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return text
    return f"this needs the '{extra}' extra: pip install 'colearn[{extra}]' (missing module {module})"


def quiet_frameworks() -> None:
    """Keep TensorFlow's, absl's and Ray's start-up chatter out of a CLI run (set before they are imported;
    a value the user set wins)."""
    for name, value in {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR",
                        "COLEARN_QUIET_FRAMEWORKS": "1"}.items():
        os.environ.setdefault(name, value)
    # Ray's notes that a local cluster started and uses token authentication (the secure default: nothing to do)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    logging.getLogger("ray._private.worker").setLevel(logging.WARNING)


def option(default: Any, *names: str, help: str, shown: Any = None, **kwargs: Any) -> Any:
    """A ``typer.Option`` whose default is written in its help as ``(default X)``: one style for every option,
    including those whose default comes from the configuration (typer's own ``[default: X]`` is turned off)."""
    return typer.Option(default, *names, show_default=False,
                        help=f"{help} (default {default if shown is None else shown})", **kwargs)


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


def add_options(run: Callable[..., Any], wrapped: Callable[..., Any], params: Sequence[inspect.Parameter],
                marker: str) -> Callable[..., Any]:
    """Give ``wrapped`` (a wrapper of the command ``run``) ``run``'s signature plus the keyword-only ``params``, so
    that typer shows and parses the extra options; ``marker`` names the attribute that says it was done."""
    signature = inspect.signature(run, eval_str=True)
    every = [*signature.parameters.values(), *params]
    wrapped.__signature__ = signature.replace(parameters=every)  # type: ignore[attr-defined]
    wrapped.__annotations__ = {p.name: p.annotation for p in every}
    setattr(wrapped, marker, True)
    return wrapped


def wrap_run_command(app: Any, marker: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``app``'s `run` command by ``wrap(run)``, once (``marker`` set by :func:`add_options`)."""
    for info in app.registered_commands:
        callback = info.callback
        if callback is not None and callback.__name__ == "run" and not getattr(callback, marker, False):
            info.callback = wrap(callback)
